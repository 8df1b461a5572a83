"""Retention of job timelines (JOB_TIMELINE_DAYS): the detailed job_event rows of jobs that
ended long ago are deleted; the jobs, their ledger entries and every younger or still
running job's timeline stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.db import jobs as jobs_db
from app.db import users as users_db
from app.db.connection import rid

DAY = 24 * 3600


async def _job(db, owner, job_id: str, status: str, ended_days_ago: float | None) -> None:
    now = datetime.now(UTC)
    started = now - timedelta(days=(ended_days_ago or 0) + 0.01)
    finished = now - timedelta(days=ended_days_ago) if ended_days_ago is not None else None
    await db.write(
        "CREATE $id CONTENT $job",
        {"id": rid("video_job", job_id), "job": {
            "owner": owner, "template": "t", "template_name": "T", "start_key": "k",
            "variables": {}, "prompt": "p", "provider": "local", "endpoint": "e",
            "parameters": {}, "status": status, "credits": 10, "created_at": started,
            "deadline_at": started + timedelta(minutes=30), "finished_at": finished}})
    for n, to in enumerate(("pending", "queued", status)):  # three steps a minute apart
        await db.write("CREATE job_event CONTENT {job: $job, to: $to, at: $at}",
                       {"job": job_id, "to": to, "at": started + timedelta(minutes=n)})


async def test_only_timelines_of_jobs_ended_before_the_cutoff_are_pruned(db):
    user = await users_db.create(db, "prune@example.com", "x", 100)
    owner = rid("user", user.id)
    await _job(db, owner, "oldok", "completed", ended_days_ago=40)
    await _job(db, owner, "oldfail", "failed", ended_days_ago=31)
    await _job(db, owner, "young", "completed", ended_days_ago=5)
    # Not ended (a stuck job far past its deadline): its timeline is what an admin needs.
    await _job(db, owner, "stuck", "processing", ended_days_ago=None)
    await db.write("UPDATE $id SET created_at = time::now() - 60d",
                   {"id": rid("video_job", "stuck")})
    await db.write("UPDATE job_event SET at = time::now() - 60d WHERE job = 'stuck'")

    assert await jobs_db.prune_timelines(db, 30 * DAY) == 2

    for job_id, kept in (("oldok", 0), ("oldfail", 0), ("young", 3), ("stuck", 3)):
        assert len(await jobs_db.timeline(db, job_id)) == kept, job_id
        assert await jobs_db.get(db, job_id) is not None, job_id  # the job itself stays
    assert await jobs_db.prune_timelines(db, 30 * DAY) == 0  # idempotent


async def test_pruning_walks_more_than_one_batch(db, monkeypatch):
    monkeypatch.setattr(jobs_db, "PRUNE_BATCH", 4)
    user = await users_db.create(db, "batch@example.com", "x", 100)
    for n in range(7):
        await _job(db, rid("user", user.id), f"j{n}", "completed", ended_days_ago=40 + n)
    assert await jobs_db.prune_timelines(db, 30 * DAY) == 7
    assert await db.read_one("SELECT * FROM job_event") == []


async def test_the_housekeeping_round_prunes_with_the_configured_retention(db):
    from app.db import housekeeping

    user = await users_db.create(db, "house@example.com", "x", 100)
    await _job(db, rid("user", user.id), "month", "canceled", ended_days_ago=10)
    await housekeeping.purge_expired(db, timeline_days=0)  # 0: kept for good
    assert len(await jobs_db.timeline(db, "month")) == 3
    await housekeeping.purge_expired(db, timeline_days=30)
    assert len(await jobs_db.timeline(db, "month")) == 3
    await housekeeping.purge_expired(db, timeline_days=7)
    assert await jobs_db.timeline(db, "month") == []
