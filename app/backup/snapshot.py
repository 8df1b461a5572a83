"""Reading every table at one instant, and writing the records back.

On the embedded engine the read runs under the process's write lock
(`Database.writes_held`): every write of the app goes through that lock and no other
process can open the store, so nothing changes until the read ends. It is therefore done in
pages (each table in record-id order, a short query each: `… FROM type::thing($t,
<last id>>..) LIMIT n`), handed on one at a time, so that neither a query's time limit nor
the memory grows with the store; and the records read are checked against a count at the
same instant. On a server the app's lock holds nobody else: the read is one query, `BEGIN;
SELECT VALUE <string> $this FROM t; …; COMMIT;`, one transaction and so one snapshot (the
SDK's `ws://` client has no transaction across queries).

Writing back goes through the engine's parser (`INSERT INTO t [literal, …]`): the literals
are the engine's own printing of each record. Table events (the job counters, the storage
use) are removed while the records go in and defined again after, so the counters come back
exactly as they were saved instead of being counted a second time."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from app.backup.archive import TABLE_NAME
from app.db.connection import LONG_QUERY_TIMEOUT, Database, DatabaseError
from app.db.schema import STATE_TABLE

# Not backed up: this database's own backup bookkeeping (a restored database starts with
# none, so its first scheduled backup runs at once), and which schema it had applied.
EXCLUDED = frozenset({"backup_state", STATE_TABLE})
BATCH_BYTES = 512 * 1024
BATCH_ROWS = 1000
PAGE_ROWS = 5000  # records per query of an embedded read: a few MB, under 0.1 s each

# A page, and the id of its last record apart: asking for `[<string> id, <string> $this]`
# made the whole read 38 % slower than one query, skipping to the last (`START`) 16 %.
_PAGE = ("SELECT VALUE <string> $this FROM {0} LIMIT $n;"
         "SELECT VALUE <string> id FROM {0} START $last LIMIT 1;")
FIRST_PAGE = _PAGE.format("type::table($t)")
NEXT_PAGE = _PAGE.format("type::thing($t, meta::id(<record> $after)>..)")  # ids after $after

# A page of one table: (table, its records as literals), for the caller to write out.
Page = Callable[[str, list[str]], Awaitable[None]]


@dataclass
class Snapshot:
    tables: dict[str, int]  # records read per table, every table (but EXCLUDED)
    library_keys: list[str]  # at the same instant (to find media that went missing)
    held: float  # seconds writes were held (the embedded engine)


async def tables(db: Database, *, timeout: float | None = None) -> list[str]:
    info = (await db.read("INFO FOR DB", timeout=timeout))[-1]
    names = sorted(info.get("tables", {}))
    for name in names:
        if not TABLE_NAME.fullmatch(name):
            raise ValueError(f"table name {name!r} cannot be backed up")
    return names


async def read(db: Database, page: Page) -> Snapshot:
    """Every record of every table (but EXCLUDED), as literals, at one instant, handed to
    `page` a table's page at a time, in order."""
    # The whole read has one limit, not QUERY_TIMEOUT per query: it grows with the store.
    deadline = time.monotonic() + LONG_QUERY_TIMEOUT
    left = lambda: max(deadline - time.monotonic(), 0.0)  # noqa: E731
    names = [t for t in await tables(db, timeout=left()) if t not in EXCLUDED]
    if not db.embedded:
        return await _one_transaction(db, names, page, left)
    found: dict[str, int] = {}
    async with db.writes_held():
        started = time.monotonic()
        for name in names:
            found[name] = await _paged(db, name, page, left)
        keys = (await db.read("SELECT VALUE key FROM library", timeout=left())
                if "library" in names else [[]])[-1]
        expected = await counts(db, names, timeout=left())
        held = time.monotonic() - started
    if found != expected:  # a page skipped or repeated a record: no backup rather than a wrong one
        raise DatabaseError(f"the snapshot read {found} records, the tables hold {expected}")
    return Snapshot(found, list(keys or []), held)


async def _paged(db: Database, name: str, page: Page, left: Callable[[], float]) -> int:
    """One table in pages, each after the last record id of the one before (the engine's
    printing of it, parsed back there: ids of every shape, nanoseconds included)."""
    total, after = 0, None
    while True:
        rows, last = await db.read(FIRST_PAGE if after is None else NEXT_PAGE,
                                   {"t": name, "after": after, "n": PAGE_ROWS,
                                    "last": PAGE_ROWS - 1}, timeout=left())
        if rows:
            await page(name, rows)
            total += len(rows)
        if len(rows or []) < PAGE_ROWS:
            return total
        after = last[0]


async def _one_transaction(db: Database, names: list[str], page: Page,
                           left: Callable[[], float]) -> Snapshot:
    sql = ["BEGIN TRANSACTION;"]
    sql += [f"SELECT VALUE <string> $this FROM type::table($t{i});"  # noqa: S608
            for i in range(len(names))]  # (only the index is formatted in)
    if "library" in names:
        sql.append("SELECT VALUE key FROM library;")
    sql.append("COMMIT TRANSACTION;")
    results = await db.read("".join(sql), _vars(names), timeout=left())
    found: dict[str, int] = {}
    for name, rows in zip(names, results[: len(names)], strict=True):
        found[name] = len(rows or [])
        if rows:
            await page(name, rows)
    keys = results[len(names)] if "library" in names else []
    return Snapshot(found, list(keys or []), 0.0)


async def counts(db: Database, names: list[str] | None = None, *,
                 timeout: float | None = None) -> dict[str, int]:
    if names is None:
        names = [t for t in await tables(db) if t not in EXCLUDED]
    if not names:
        return {}
    rows = await db.read("".join(f"SELECT count() FROM type::table($t{i}) GROUP ALL;"  # noqa: S608
                                 for i in range(len(names))), _vars(names), timeout=timeout)
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
