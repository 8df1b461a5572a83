"""Applies scripts/schema.surql, and against a server scripts/changefeeds.surql (both
idempotent), when they differ from what the database last had applied.

Applying them rebuilds every index (`DEFINE INDEX OVERWRITE`), in a time that grows with
the store: 55 s at 50,000 jobs, about 100 s at 70,000 (docs/BENCHMARKS.md, backups). Every
start, CLI command and restore applies the schema, so the database keeps the SHA-256 of
the text it last applied (`schema_state:applied`) and an unchanged schema is not applied
again: a restart of a large store then takes seconds."""

from __future__ import annotations

import hashlib
from pathlib import Path

from app.db.connection import LONG_QUERY_TIMEOUT, Database, rid

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
SCHEMA_PATH = SCRIPTS / "schema.surql"
CHANGEFEEDS_PATH = SCRIPTS / "changefeeds.surql"
# The shape of the data, as backups record it (app/backup/): a backup restores only into the
# same version. Bump it when a change to schema.surql means rows saved before it no longer
# fit (a new required field without a default, a changed type or meaning); additions that
# old rows satisfy keep it.
SCHEMA_VERSION = 1
# Where the applied schema's digest is kept: about the store, not its data (not backed up).
STATE_TABLE = "schema_state"
STATE = rid(STATE_TABLE, "applied")


def schema_digest(embedded: bool) -> str:
    text = SCHEMA_PATH.read_text() + ("" if embedded else CHANGEFEEDS_PATH.read_text())
    return hashlib.sha256(text.encode()).hexdigest()


async def applied_digest(db: Database) -> str | None:
    # Part of applying the schema, under its limit (this read is quick; the step is not).
    found = await db.read(f"SELECT VALUE digest FROM ONLY {STATE_TABLE}:applied",  # noqa: S608
                          timeout=LONG_QUERY_TIMEOUT)
    digest: str | None = found[-1]
    return digest


async def apply_schema(db: Database, *, force: bool = False) -> bool:
    """Apply the schema unless the database has this very text applied (or `force`).
    Returns whether it was applied."""
    if not force and await applied_digest(db) == schema_digest(db.embedded):
        return False
    await db.write(SCHEMA_PATH.read_text(), timeout=LONG_QUERY_TIMEOUT)
    if not db.embedded:
        await db.write(CHANGEFEEDS_PATH.read_text(), timeout=LONG_QUERY_TIMEOUT)
    await record_applied(db)  # last: a start that stopped half-way applies it all again
    return True


async def record_applied(db: Database) -> None:
    await db.write("UPSERT $state SET digest = $digest, applied_at = time::now() RETURN NONE",
                   {"state": STATE, "digest": schema_digest(db.embedded)},
                   timeout=LONG_QUERY_TIMEOUT)


async def forget_applied(db: Database) -> None:
    """Schema objects are about to change by other means (a restore removes the table
    events while it writes, then defines them again): until `record_applied`, a start
    applies the whole schema, whatever stopped in between."""
    await db.write("DELETE $state", {"state": STATE})
