"""Applies scripts/schema.surql, and against a server scripts/changefeeds.surql (both
idempotent)."""

from __future__ import annotations

from pathlib import Path

from app.db.connection import LONG_QUERY_TIMEOUT, Database

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
SCHEMA_PATH = SCRIPTS / "schema.surql"
CHANGEFEEDS_PATH = SCRIPTS / "changefeeds.surql"
# The shape of the data, as backups record it (app/backup/): a backup restores only into the
# same version. Bump it when a change to schema.surql means rows saved before it no longer
# fit (a new required field without a default, a changed type or meaning); additions that
# old rows satisfy keep it.
SCHEMA_VERSION = 1


async def apply_schema(db: Database) -> None:
    # Every index is rebuilt (OVERWRITE), in a time that grows with the store.
    await db.write(SCHEMA_PATH.read_text(), timeout=LONG_QUERY_TIMEOUT)
    if not db.embedded:
        await db.write(CHANGEFEEDS_PATH.read_text(), timeout=LONG_QUERY_TIMEOUT)
