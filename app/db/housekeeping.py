"""Deleting what has expired: idempotency keys and webhook ids, sessions, attempt
counters, and the timelines of jobs that ended more than JOB_TIMELINE_DAYS ago. Reads
already ignore expired records; this keeps the tables (and the embedded engine's in-memory
index) small. Run by every driver every PURGE_EVERY seconds: the deletes are idempotent, so
processes may overlap, and a round with nothing to delete costs one indexed read each."""

from __future__ import annotations

from app.db import idempotency as idempotency_db
from app.db import jobs as jobs_db
from app.db import sessions as sessions_db
from app.db import throttle as throttle_db
from app.db.connection import Database

PURGE_EVERY = 600.0  # seconds
DAY = 24 * 3600.0
COUNTER_AGE = DAY  # attempt counters are windows of at most an hour


async def purge_expired(db: Database, timeline_days: float = 0) -> None:
    await idempotency_db.purge_expired(db)
    await sessions_db.purge_expired(db)
    await throttle_db.purge(db, COUNTER_AGE)
    if timeline_days > 0:
        await jobs_db.prune_timelines(db, timeline_days * DAY)
