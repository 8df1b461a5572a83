"""Idempotency keys of POST /api/templates/video. A key's record is written only in the
transaction that records the job (app/db/jobs.py `create`), so a key never makes two jobs,
whichever process each request reaches; here it is read back and, with fal's webhook ids,
forgotten once expired."""

from __future__ import annotations

from typing import Any

from app.db.connection import Database, rid


async def get(db: Database, owner_id: str, key: str) -> dict[str, Any] | None:
    """The live record of `key` for this person (an expired one counts as none)."""
    row = await db.read_one(
        "SELECT * FROM ONLY $id WHERE expires_at > time::now()",
        {"id": rid("idempotency_key", [owner_id, key])},
    )
    return row or None


async def purge_expired(db: Database) -> None:
    """Delete expired keys and webhook ids (reads ignore them already; this keeps the
    tables small)."""
    await db.write(
        "DELETE idempotency_key WHERE expires_at < time::now() RETURN NONE;"
        "DELETE webhook_seen WHERE expires_at < time::now() RETURN NONE;"
    )
