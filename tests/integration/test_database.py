"""The database layer on the real embedded engine."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from app.db.connection import Database, DatabaseLocked, Thrown
from app.db.schema import apply_schema
from app.settings import Settings


async def test_schema_applies_twice(db):
    await apply_schema(db)
    info = await db.read_one("INFO FOR DB")
    assert {"user", "ledger", "template", "library", "video_job", "job_event"} <= set(
        info["tables"]
    )


async def test_concurrent_writes_lose_nothing(db):
    """Without the write lock the embedded engine loses some of these increments."""
    await db.write("CREATE counter:c SET n = 0")
    await asyncio.gather(*[
        db.write("BEGIN; LET $c = (SELECT VALUE n FROM ONLY counter:c); "
                 "UPDATE counter:c SET n = $c + 1; COMMIT;")
        for _ in range(200)
    ])
    assert await db.read_one("SELECT VALUE n FROM ONLY counter:c") == 200


async def test_throw_is_reported_as_thrown_and_rolls_back(db):
    with pytest.raises(Thrown) as err:
        await db.write("BEGIN; CREATE thing:a SET x = 1; THROW 'nope'; COMMIT;")
    assert err.value.code == "nope"
    assert await db.read_one("SELECT * FROM thing") == []


async def test_unique_email(db):
    from app.db import users

    await users.create(db, "a@example.com", "h", 10)
    with pytest.raises(Thrown):
        await users.create(db, "a@example.com", "h", 10)


async def test_surrealkv_survives_restart(tmp_path):
    settings = Settings(data_dir=tmp_path, database_url=None)
    first = Database(settings)
    await first.connect()
    await apply_schema(first)
    await first.write("CREATE note:one SET text = 'kept'")
    await first.close()
    second = Database(settings)
    await second.connect()
    try:
        assert await second.read_one("SELECT VALUE text FROM ONLY note:one") == "kept"
    finally:
        await second.close()


async def test_second_process_is_refused(tmp_path):
    settings = Settings(data_dir=tmp_path, database_url=None)
    holder = Database(settings)
    await holder.connect()
    try:
        with pytest.raises(DatabaseLocked):
            await Database(settings).connect()
        # And from another process: the CLI says what to do and exits non-zero.
        code = textwrap.dedent("""
            import sys
            from app.cli import main
            main(["init-db"])
        """)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={"DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
                              timeout=60, check=False)
        assert proc.returncode == 2
        assert "already open in another process" in proc.stderr
    finally:
        await holder.close()
