"""A backup of a store larger than one read: its snapshot (and the schema the backup command
applies first) run under a time limit of their own (LONG_QUERY_TIMEOUT, not each query's
QUERY_TIMEOUT, for requests and the driver), on the embedded engine in pages of record ids,
and every record comes back. A page here is a few records (`PAGE_ROWS`), so a small store
stands for a large one."""

from __future__ import annotations

import asyncio
import re

import pytest

from app.backup import snapshot
from app.backup.restore import restore
from app.backup.service import BackupService
from app.db import connection
from app.db import users as users_db
from app.db.connection import ConnectionLost, Database
from app.db.schema import apply_schema
from app.db.templates import sync_catalogue
from app.settings import Settings

REV = re.compile(r"\brev: \d+")
PAGE = 4  # records per page: every table below takes several
ODD_IDS = """
    CREATE kinds:⟨odd id: 'quote' ⟩ SET n = 0; CREATE kinds:1 SET n = 1;
    CREATE kinds:-5 SET n = 2; CREATE kinds:['a', 2] SET n = 3; CREATE kinds:{ k: 'v' };
    CREATE kinds:[d'2024-02-29T23:59:59.123456789Z', 1.5dec,
                  u'0191c3a0-7b8a-7d6e-9f00-1a2b3c4d5e6f'];
    CREATE kinds:⟨a\\⟩b⟩; CREATE type::thing('kinds', 'new\nline'); CREATE kinds:`x y`;
    CREATE kinds:abc; CREATE kinds:ulid(); CREATE kinds:['a', 1];
"""


@pytest.fixture(params=["embedded", "server"])
def engine(request, tmp_path) -> tuple[Settings, Settings]:
    """Where the backup is made, and where it is restored."""
    if request.param == "embedded":
        return (Settings(data_dir=tmp_path / "src", database_url="mem://",
                         backup_dir=tmp_path / "backups", backup_interval_hours=0),
                Settings(data_dir=tmp_path / "dst", database_url=None,
                         backup_interval_hours=0))
    url = request.getfixturevalue("surreal_server_url")
    name = request.getfixturevalue("surreal_db_name")
    return tuple(Settings(data_dir=tmp_path, database_url=url, surrealdb_user="root",  # type: ignore[return-value]
                          surrealdb_pass="root", surrealdb_ns="test", surrealdb_db=db,
                          backup_dir=tmp_path / "backups", backup_interval_hours=0)
                 for db in (name, name + "_restored"))


@pytest.fixture
def small_pages(monkeypatch) -> None:
    monkeypatch.setattr(snapshot, "PAGE_ROWS", PAGE, raising=False)


async def everything(db: Database) -> dict[str, list[str]]:
    """Every record of every table but the backups' own, as the engine prints it (but
    `rev`, which counts writes: writing a record back counts one)."""
    names = [t for t in await snapshot.tables(db) if t not in snapshot.EXCLUDED]
    rows = await db.read("".join(f"SELECT VALUE <string> $this FROM type::table($t{i});"
                                 for i in range(len(names))),
                         {f"t{i}": t for i, t in enumerate(names)})
    return {t: sorted(REV.sub("rev", x) for x in r)
            for t, r in zip(names, rows, strict=True) if r}


async def fill(db: Database, people: int) -> list[str]:
    await apply_schema(db)
    await sync_catalogue(db)
    await db.write(ODD_IDS)
    ids = []
    for i in range(people):
        user = await users_db.create(db, f"p{i}@example.com", "hash", 100)
        await users_db.grant(db, user.id, 5, "grant")
        ids.append(user.id)
    return ids


async def test_a_snapshot_runs_under_its_own_limit_and_every_record_comes_back(
        engine, small_pages, monkeypatch):
    source, target = engine
    ordinary = connection.QUERY_TIMEOUT
    read = snapshot.read

    async def read_as_if_large(*args):
        # With each ordinary query's limit at a microsecond, every query that keeps it
        # fails, as a read of every table of a large store fails the 60 s one.
        monkeypatch.setattr(connection, "QUERY_TIMEOUT", 1e-6)
        try:
            return await read(*args)
        finally:
            monkeypatch.setattr(connection, "QUERY_TIMEOUT", ordinary)

    db = Database(source)
    await db.connect()
    try:
        await fill(db, 12)
        before = await everything(db)
        assert all(len(before[t]) > PAGE for t in ("kinds", "ledger", "user", "template"))
        monkeypatch.setattr(connection, "QUERY_TIMEOUT", 1e-6)
        with pytest.raises(ConnectionLost):  # the limit above does fail a query
            await db.read("INFO FOR DB")
        monkeypatch.setattr(connection, "QUERY_TIMEOUT", ordinary)
        monkeypatch.setattr(snapshot, "read", read_as_if_large)
        result = await BackupService(source, db).run("test")
    finally:
        await db.close()
    assert result.manifest["tables"]["kinds"] == len(before["kinds"])

    report = await restore(target, str(source.backups_path / result.name))
    assert report.written == {t: len(r) for t, r in before.items()}
    db = Database(target)
    await db.connect()
    try:
        assert await everything(db) == before  # ids of every shape, across page ends
    finally:
        await db.close()


async def test_a_snapshot_in_pages_is_one_instant_while_writes_go_on(tmp_path, small_pages):
    """Grants (a balance and its ledger entry in one transaction) run throughout a backup
    read in pages; the ledger is read before the accounts, so a grant landing between two
    pages would leave a restored balance off its ledger."""
    source = Settings(data_dir=tmp_path / "src", database_url="mem://",
                      backup_dir=tmp_path / "backups", backup_interval_hours=0)
    db = Database(source)
    await db.connect()
    stop, started = asyncio.Event(), asyncio.Event()
    granted = 0

    async def granting(ids: list[str]) -> None:
        nonlocal granted
        while not stop.is_set():
            await users_db.grant(db, ids[granted % len(ids)], 1, "grant")
            granted += 1
            if granted == 5:
                started.set()
            await asyncio.sleep(0)

    try:
        ids = await fill(db, 20)
        writer = asyncio.create_task(granting(ids))
        await started.wait()  # the writer is under way before the backup starts
        during = granted
        result = await BackupService(source, db).run("test")
        stop.set()
        await writer
    finally:
        await db.close()
    assert granted > during  # it kept writing while the backup ran

    target = Settings(data_dir=tmp_path / "dst", database_url=None, backup_interval_hours=0)
    report = await restore(target, str(source.backups_path / result.name))
    assert report.warnings == []  # among them: balances that differ from their ledger
    assert report.written["ledger"] > PAGE and report.written["user"] > PAGE
    db = Database(target)
    await db.connect()
    try:
        for i in range(len(ids)):
            user = await users_db.by_email(db, f"p{i}@example.com")
            assert user is not None
            assert user.balance == await users_db.ledger_sum(db, user.id)
    finally:
        await db.close()


async def test_applying_the_schema_runs_under_the_long_limit(tmp_path, monkeypatch):
    """`python -m app backup` (and every start) applies the schema first, which rebuilds
    every index: 55 s for 50,000 jobs, so not under each query's 60 s limit either."""
    db = Database(Settings(data_dir=tmp_path, database_url="mem://"))
    await db.connect()
    try:
        await fill(db, 3)
        monkeypatch.setattr(connection, "QUERY_TIMEOUT", 1e-6)
        with pytest.raises(ConnectionLost):  # the limit above does fail a query
            await db.read("INFO FOR DB")
        await apply_schema(db)
        monkeypatch.undo()
        assert len(await db.read_one("SELECT * FROM user")) == 3
    finally:
        await db.close()
