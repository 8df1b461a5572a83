"""Reading every table at one instant, and writing the records back.

The read is one query: `BEGIN; SELECT VALUE <string> $this FROM t; …; COMMIT;`. On a server
that is one transaction, so one snapshot. On the embedded engine it also runs under the
process's write lock (`Database.writes_held`): every write of the app goes through that lock
and no other process can open the store, so no write lands between the tables either.

Writing back goes through the engine's parser (`INSERT INTO t [literal, …]`): the literals
are the engine's own printing of each record. Table events (the job counters, the storage
use) are removed while the records go in and defined again after, so the counters come back
exactly as they were saved instead of being counted a second time."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from app.backup.archive import TABLE_NAME
from app.db.connection import Database

# Not backed up: this database's own backup bookkeeping (a restored database starts with
# none, so its first scheduled backup runs at once).
EXCLUDED = frozenset({"backup_state"})
BATCH_BYTES = 512 * 1024
BATCH_ROWS = 1000


async def tables(db: Database) -> list[str]:
    info = await db.read_one("INFO FOR DB")
    names = sorted(info.get("tables", {}))
    for name in names:
        if not TABLE_NAME.fullmatch(name):
            raise ValueError(f"table name {name!r} cannot be backed up")
    return names


async def read(db: Database) -> tuple[dict[str, list[str]], list[str], float]:
    """Every record of every table (but EXCLUDED), as literals, at one instant; also the
    library's keys at that instant (to find media that went missing), and how long writes
    were held (seconds)."""
    names = [t for t in await tables(db) if t not in EXCLUDED]
    sql = ["BEGIN TRANSACTION;"]
    sql += [f"SELECT VALUE <string> $this FROM type::table($t{i});"  # noqa: S608
            for i in range(len(names))]  # (only the index is formatted in)
    if "library" in names:
        sql.append("SELECT VALUE key FROM library;")
    sql.append("COMMIT TRANSACTION;")
    async with db.writes_held():
        started = time.monotonic()
        results = await db.read("".join(sql), _vars(names))
        held = time.monotonic() - started
    records = dict(zip(names, results[: len(names)], strict=True))
    keys = results[len(names)] if "library" in names else []
    return records, list(keys or []), held


async def counts(db: Database) -> dict[str, int]:
    names = [t for t in await tables(db) if t not in EXCLUDED]
    if not names:
        return {}
    rows = await db.read("".join(f"SELECT count() FROM type::table($t{i}) GROUP ALL;"  # noqa: S608
                                 for i in range(len(names))), _vars(names))
    return {t: (r[0]["count"] if r else 0) for t, r in zip(names, rows, strict=True)}


def _vars(names: list[str]) -> dict[str, str]:
    return {f"t{i}": name for i, name in enumerate(names)}


async def events(db: Database) -> list[tuple[str, str, str]]:
    """(table, event name, its DEFINE statement) of every table event."""
    found = []
    for table in await tables(db):
        info = await db.read_one(f"INFO FOR TABLE {table}")
        for name, sql in (info.get("events") or {}).items():
            if not TABLE_NAME.fullmatch(name):
                raise ValueError(f"event name {name!r} on {table} cannot be handled")
            found.append((table, name, sql))
    return found


async def write(db: Database, rows: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Insert (table, literal) records in batches; returns rows written per table. The
    caller has removed the table events (`events`, then `REMOVE EVENT`)."""
    written: dict[str, int] = {}
    batch: list[str] = []
    table: str | None = None
    size = 0

    async def flush() -> None:
        nonlocal size
        if batch and table:
            # The records are the engine's own printing of them (a backup is trusted like
            # a `surreal import` file); the table name matched TABLE_NAME.
            await db.write(f"INSERT INTO {table} [{', '.join(batch)}] RETURN NONE")  # noqa: S608
            written[table] = written.get(table, 0) + len(batch)
        batch.clear()
        size = 0

    for name, literal in rows:
        if name != table or size > BATCH_BYTES or len(batch) >= BATCH_ROWS:
            await flush()
            table = name
        batch.append(literal)
        size += len(literal)
    await flush()
    return written


async def without_events(db: Database) -> list[tuple[str, str, str]]:
    found = await events(db)
    if found:
        await db.write("".join(f"REMOVE EVENT {name} ON TABLE {table};"
                               for table, name, _sql in found))
    return found


async def restore_events(db: Database, found: list[tuple[str, str, str]]) -> None:
    if found:
        await db.write("".join(f"{sql};" for _table, _name, sql in found))


async def clear_leases(db: Database) -> int:
    """The processes that held job leases are gone: the next driver takes the jobs at once."""
    if "video_job" not in await tables(db):
        return 0
    rows = await db.write_one("UPDATE video_job SET lease_owner = NONE, lease_until = NONE "
                              "WHERE lease_owner != NONE RETURN VALUE id")
    return len(rows or [])


def summary(rows: dict[str, Any]) -> str:
    return ", ".join(f"{t} {n}" for t, n in rows.items() if n)
