"""Sign-in sessions. The browser's cookie holds only a random id; the record is keyed by
the id's SHA-256, so reading the table does not give anyone a usable cookie."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import msgspec
from surrealdb import RecordID

from app.db.connection import Database, rid
from app.db.records import decode_all

LAST_SEEN_GRANULARITY = timedelta(seconds=60)  # "last seen" is written at most this often


class SignIn(msgspec.Struct, kw_only=True):
    """A live session as its owner sees it (`key` is the record's key)."""
    key: str
    user_agent: str | None = None
    created_at: datetime
    last_seen: datetime


def key_of(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _sid(session_id: str) -> RecordID:
    return rid("session", key_of(session_id))


async def get(db: Database, session_id: str, renew_for: int | None) -> str | None:
    """The session's data, or None when it does not exist or has expired. With
    `renew_for`, a session in use is extended (and its "last seen" moved) about once a
    minute, not on every request."""
    row = await db.read_one("SELECT data, expires_at, last_seen FROM ONLY $sid",
                            {"sid": _sid(session_id)})
    now = datetime.now(UTC)
    if not row or row["expires_at"] <= now:
        return None
    if renew_for and now - row["last_seen"] >= LAST_SEEN_GRANULARITY:
        await db.write("UPDATE $sid SET last_seen = time::now(), expires_at = $until "
                       "WHERE expires_at > time::now() RETURN NONE",
                       {"sid": _sid(session_id), "until": now + timedelta(seconds=renew_for)})
    data: str = row["data"]
    return data


async def put(db: Database, session_id: str, data: str, user_id: str | None,
              user_agent: str | None, expires_in: int) -> None:
    await db.write(
        "UPSERT $sid SET data = $data, user = $user, user_agent = $ua, "
        "last_seen = time::now(), expires_at = $until RETURN NONE",
        {"sid": _sid(session_id), "data": data, "user": rid("user", user_id) if user_id else None,
         "ua": (user_agent or "")[:300] or None,
         "until": datetime.now(UTC) + timedelta(seconds=expires_in)},
    )


async def delete(db: Database, session_id: str) -> None:
    await db.write("DELETE $sid", {"sid": _sid(session_id)})


async def list_for(db: Database, user_id: str) -> list[SignIn]:
    """A person's live sessions, most recently used first."""
    rows = await db.read_one(
        "SELECT meta::id(id) AS key, user_agent, created_at, last_seen FROM session "
        "WHERE user = $user AND expires_at > time::now() ORDER BY last_seen DESC",
        {"user": rid("user", user_id)},
    )
    return decode_all(rows, SignIn)


async def end_others(db: Database, user_id: str, keep_session_id: str | None) -> list[str]:
    """End every session of the person but `keep_session_id`; returns the ended keys."""
    rows = await db.write_one(
        "DELETE session WHERE user = $user AND id != $keep RETURN BEFORE",
        {"user": rid("user", user_id),
         "keep": _sid(keep_session_id) if keep_session_id else None},
    )
    return [str(row["id"].id) for row in rows or []]


async def end_one(db: Database, user_id: str, key: str) -> list[str]:
    rows = await db.write_one("DELETE $sid WHERE user = $user RETURN BEFORE",
                              {"sid": rid("session", key), "user": rid("user", user_id)})
    return [str(row["id"].id) for row in rows or []]


async def purge_expired(db: Database) -> None:
    await db.write("DELETE session WHERE expires_at <= time::now() RETURN NONE")
