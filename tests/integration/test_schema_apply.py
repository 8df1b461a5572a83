"""Applying the schema rebuilds every index, in a time that grows with the store (55 s at
50,000 jobs): app/db/schema.py applies it only when its text differs from the one the
database last had applied."""

from __future__ import annotations

from app.db import schema


async def indexes(db) -> set[str]:
    info = await db.read_one("INFO FOR TABLE video_job")
    return set(info["indexes"])


async def test_an_unchanged_schema_is_not_applied_again(db):
    # The fixture applied it. An index dropped by hand shows whether it runs again.
    await db.write("REMOVE INDEX job_owner_status ON TABLE video_job")
    assert await schema.apply_schema(db) is False
    assert "job_owner_status" not in await indexes(db)
    assert await schema.apply_schema(db, force=True) is True
    assert "job_owner_status" in await indexes(db)


async def test_a_changed_schema_is_applied_once(db, tmp_path, monkeypatch):
    changed = tmp_path / "schema.surql"
    changed.write_text(schema.SCHEMA_PATH.read_text()
                       + "\nDEFINE INDEX OVERWRITE job_probe ON video_job FIELDS template;\n")
    monkeypatch.setattr(schema, "SCHEMA_PATH", changed)
    assert await schema.apply_schema(db) is True
    assert "job_probe" in await indexes(db)
    assert await schema.applied_digest(db) == schema.schema_digest(embedded=True)
    assert await schema.apply_schema(db) is False


async def test_a_start_after_an_interrupted_change_applies_it_all(db):
    """A restore removes the table events while it writes: until it records the schema
    again, a start applies everything (here: the job counters' event comes back)."""
    await schema.forget_applied(db)
    await db.write("REMOVE EVENT job_count ON TABLE video_job")
    assert await schema.apply_schema(db) is True
    info = await db.read_one("INFO FOR TABLE video_job")
    assert "job_count" in info["events"]
