"""The SurrealDB stand-in (tests/fakes/surreal_server.py) answers the SDK's ws:// client the
way a server does, and the way the embedded engine answers the same queries."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import surrealdb
from surrealdb import RecordID
from surrealdb.errors import ServerError

from app.db.connection import Database, Thrown
from app.db.schema import apply_schema
from app.settings import Settings

# Registers the fixtures here too (harmless once tests/conftest.py lists the plugin).
pytest_plugins = ["tests.fakes.surreal_fixture"]

NS = "test"


@contextlib.asynccontextmanager
async def client(url: str, db: str | None) -> AsyncIterator[object]:
    conn = surrealdb.AsyncSurreal(url)
    await conn.connect()
    try:
        if url.startswith("ws"):
            await conn.signin({"username": "root", "password": "root"})
        if db is not None:
            await conn.use(NS, db)
        yield conn
    finally:
        await conn.close()


def statements(response: dict) -> list[tuple[str, object]]:
    return [(s["status"], s["result"]) for s in response["result"]]


async def test_the_sdk_signs_in_and_queries(surreal_server_url, surreal_db_name):
    conn = surrealdb.AsyncSurreal(surreal_server_url)
    await conn.connect()
    try:
        tokens = await conn.signin({"username": "root", "password": "root"})
        assert isinstance(tokens.access, str) and tokens.access.count(".") == 2
        await conn.authenticate(tokens.access)
        await conn.use(NS, surreal_db_name)
        created = await conn.create(RecordID("film", "a"), {"title": "Alpha"})
        assert created == {"id": RecordID("film", "a"), "title": "Alpha"}
        response = await conn.query_raw("SELECT title FROM film; RETURN 1 + 1")
        assert statements(response) == [("OK", [{"title": "Alpha"}]), ("OK", 2)]
        assert all(isinstance(s["time"], str) for s in response["result"])
    finally:
        await conn.close()


async def test_wrong_credentials_are_refused(surreal_server_url):
    conn = surrealdb.AsyncSurreal(surreal_server_url)
    await conn.connect()
    try:
        with pytest.raises(ServerError, match="There was a problem with authentication"):
            await conn.signin({"username": "root", "password": "wrong"})
        with pytest.raises(ServerError, match="There was a problem with authentication"):
            await conn.authenticate("a.b.c")
    finally:
        await conn.close()


async def test_record_ids_and_datetimes_round_trip(surreal_server_url, surreal_db_name):
    when = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    async with client(surreal_server_url, surreal_db_name) as conn:
        await conn.query("CREATE job:1 SET owner = $owner, at = $at",
                         {"owner": RecordID("user", "ann"), "at": when})
        row = (await conn.query("SELECT * FROM ONLY job:1"))
        assert row == {"id": RecordID("job", 1), "owner": RecordID("user", "ann"), "at": when}
        assert await conn.query("RETURN $at + 1s", {"at": when}) == when.replace(second=10)
        assert await conn.query("RETURN type::is::record($r)", {"r": row["owner"]}) is True


QUERIES = [
    "BEGIN; CREATE a:1; THROW 'insufficient_credits'; COMMIT;",
    "CREATE a:2; CREATE a:2; SELECT * FROM a",
    "UPDATE ONLY a:2 SET x = 1 WHERE false",
    "SELECT * FROM missing_table; RETURN [1, 'x', NONE, NULL]",
]


async def test_answers_are_the_embedded_engines(surreal_server_url, surreal_db_name):
    async with (client(surreal_server_url, surreal_db_name) as ws,
                client("mem://", surreal_db_name) as embedded):
        for sql in QUERIES:
            assert statements(await ws.query_raw(sql)) == statements(
                await embedded.query_raw(sql)), sql
        thrown = statements(await ws.query_raw(QUERIES[0]))
        assert thrown[-1] == ("ERR", "An error occurred: insufficient_credits")
        # A parse error is an RPC error on a server; the embedded engine raises it instead.
        answer = await ws.query_raw("SELEC oops")
        with pytest.raises(RuntimeError) as raised:
            await embedded.query_raw("SELEC oops")
        assert answer["error"] == {"code": -32000, "message": str(raised.value)}
        assert "Parse error" in answer["error"]["message"]


async def test_each_connection_keeps_its_database_and_variables(
    surreal_server_url, surreal_db_name
):
    other = surreal_db_name + "_other"
    async with (client(surreal_server_url, surreal_db_name) as one,
                client(surreal_server_url, other) as two,
                client(surreal_server_url, None) as nowhere):
        await one.let("who", "one")
        await two.let("who", "two")
        await asyncio.gather(*(c.query("CREATE thing SET by = $who", {"n": i})
                               for i in range(5) for c in (one, two)))
        assert await one.query("SELECT VALUE by FROM thing") == ["one"] * 5
        await one.query(f"USE DB {other}_moved")  # moves one's session, never two's
        assert await two.query("SELECT VALUE by FROM thing") == ["two"] * 5
        assert await one.query("RETURN $who", {"who": "override"}) == "override"
        await one.unset("who")
        assert await one.query("RETURN $who") is None
        assert statements(await nowhere.query_raw("SELECT * FROM thing")) == [
            ("ERR", "Specify a namespace to use")]


async def test_the_apps_database_works_over_ws(surreal_server_url, surreal_db_name, tmp_path):
    settings = Settings(data_dir=tmp_path, database_url=surreal_server_url,
                        surrealdb_user="root", surrealdb_pass="root",
                        surrealdb_db=surreal_db_name)
    db = Database(settings)
    assert not db.embedded
    await db.connect()
    try:
        await apply_schema(db)
        await apply_schema(db)  # idempotent, as on every start
        tables = (await db.read_one("INFO FOR DB"))["tables"]
        assert "user" in tables
        with pytest.raises(Thrown) as thrown:
            await db.write("BEGIN; CREATE probe:1; THROW 'nope'; COMMIT;")
        assert thrown.value.code == "nope"
        assert await db.read_one("SELECT * FROM probe") == []
    finally:
        await db.close()


async def test_concurrent_transactions_lose_no_update(surreal_server_url, surreal_db_name):
    async with contextlib.AsyncExitStack() as stack:
        conns = [await stack.enter_async_context(client(surreal_server_url, surreal_db_name))
                 for _ in range(4)]
        await conns[0].query("CREATE counter:b SET n = 0")

        async def increment(conn) -> None:
            for _ in range(50):  # a real server may answer with a retryable conflict
                answer = statements(await conn.query_raw(
                    "BEGIN; UPDATE counter:b SET n += 1; COMMIT;"))
                if all(status == "OK" for status, _ in answer):
                    return
                assert "can be retried" in str(answer), answer
            raise AssertionError("too many conflicts")

        await asyncio.gather(*(increment(conns[i % 4]) for i in range(200)))
        assert await conns[1].query("RETURN counter:b.n") == 200


async def test_show_changes_over_ws(surreal_server_url, surreal_db_name):
    async with client(surreal_server_url, surreal_db_name) as conn:
        await conn.query("DEFINE TABLE t CHANGEFEED 1h; CREATE t:1 SET a = 1")
        rows = await conn.query("SHOW CHANGES FOR TABLE t SINCE 0 LIMIT 10")
        assert [r["changes"] for r in rows] == [
            [{"define_table": {"name": "t"}}], [{"update": {"id": RecordID("t", 1), "a": 1}}]]
        stamps = [r["versionstamp"] for r in rows]
        assert all(isinstance(v, int) for v in stamps) and stamps == sorted(stamps)

        await conn.query("UPDATE t:1 SET a = 2; DELETE t:1")
        # SINCE takes versionstamp >> 16 and is inclusive: this skips what was already seen.
        since = stamps[-1] // 65536 + 1
        later = await conn.query(f"SHOW CHANGES FOR TABLE t SINCE {since} LIMIT 10")
        assert [r["changes"] for r in later] == [
            [{"update": {"id": RecordID("t", 1), "a": 2}}], [{"delete": {"id": RecordID("t", 1)}}]]
        assert later[0]["versionstamp"] > stamps[-1]


async def test_data_persists_with_path_and_sigterm_ends_it(tmp_path):
    from tests.fakes.surreal_fixture import start_surreal_standin, stop_surreal_standin

    proc, url = start_surreal_standin("--path", str(tmp_path / "db"))
    try:
        async with client(url, "persist") as conn:
            await conn.query("CREATE kept:1 SET v = 'yes'")
    finally:
        stop_surreal_standin(proc)
    assert proc.returncode == 0
    proc, url = start_surreal_standin("--path", str(tmp_path / "db"))
    try:
        async with client(url, "persist") as conn:
            assert await conn.query("SELECT VALUE v FROM kept") == ["yes"]
    finally:
        stop_surreal_standin(proc)
