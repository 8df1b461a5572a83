"""Deleting what has expired: idempotency keys and webhook ids, sessions and attempt
counters. Reads already ignore expired records; this keeps the tables small. Run by every
driver every PURGE_EVERY seconds (the deletes are idempotent, so processes may overlap)."""

from __future__ import annotations

from app.db import idempotency as idempotency_db
from app.db import sessions as sessions_db
from app.db import throttle as throttle_db
from app.db.connection import Database

PURGE_EVERY = 600.0  # seconds
COUNTER_AGE = 24 * 3600.0  # attempt counters are windows of at most an hour


async def purge_expired(db: Database) -> None:
    await idempotency_db.purge_expired(db)
    await sessions_db.purge_expired(db)
    await throttle_db.purge(db, COUNTER_AGE)
