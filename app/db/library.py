"""Queries on library items (uploaded images and finished videos)."""

from __future__ import annotations

from typing import Any

from app.db.connection import Database, rid
from app.db.records import LibraryItem, decode, decode_all
from app.storage.posters import is_poster_key, video_key_of


async def add(
    db: Database, owner_id: str, key: str, kind: str, content_type: str, size: int,
    name: str | None = None, quota: int | None = None,
) -> LibraryItem:
    """File an item. With `quota`, only if the owner's library stays within that many bytes,
    checked and filed in one transaction (concurrent uploads cannot both slip under it):
    Thrown("over_quota") otherwise. The usage record is kept by a database event
    (scripts/schema.surql `storage_use`), also for finished videos, which are filed
    whatever the quota: they are paid for, and count from then on."""
    check = "" if quota is None else """
        LET $used = (SELECT VALUE bytes FROM ONLY $use) ?? 0;
        IF $used + $item.size > $quota { THROW "over_quota" };"""
    result = await db.write(
        f"BEGIN;{check} RETURN (CREATE ONLY library CONTENT $item); COMMIT;",
        {"use": rid("storage_use", owner_id), "quota": quota,
         "item": {"owner": rid("user", owner_id), "key": key, "kind": kind,
                  "content_type": content_type, "size": size, "name": name}},
    )
    row: dict[str, Any] = result[-1]
    return decode(row, LibraryItem)


async def used_bytes(db: Database, owner_id: str) -> int:
    """The bytes of a person's library: uploads and finished videos."""
    used = await db.read_one("RETURN (SELECT VALUE bytes FROM ONLY $use) ?? 0",
                             {"use": rid("storage_use", owner_id)})
    return int(used or 0)


# Each item with what its tile shows of the job that made it (videos): the template's name,
# read by record id in the same query, so a listing costs one query however many tiles.
ITEM = "*, IF job != NONE THEN type::thing('video_job', job).template_name END AS template_name"


async def list_for(db: Database, owner_id: str, kind: str | None = None) -> list[LibraryItem]:
    where = "owner = $owner" + (" AND kind = $kind" if kind else "")
    return decode_all(await db.read_one(
        f"SELECT {ITEM} FROM library WHERE {where} ORDER BY created_at DESC",  # noqa: S608
        {"owner": rid("user", owner_id), "kind": kind},
    ), LibraryItem)


async def get_owned(db: Database, owner_id: str, key: str) -> LibraryItem | None:
    rows = await db.read_one(
        f"SELECT {ITEM} FROM library WHERE key = $key AND owner = $owner LIMIT 1",  # noqa: S608
        {"key": key, "owner": rid("user", owner_id)},
    )
    return decode(rows[0], LibraryItem) if rows else None


async def poster_owned(db: Database, owner_id: str, key: str) -> bool:
    """Whether `key` is the poster of one of this person's videos (served like the video)."""
    if not is_poster_key(key):
        return False
    rows = await db.read_one(
        "SELECT VALUE poster_key FROM library WHERE key = $video AND owner = $owner LIMIT 1",
        {"video": video_key_of(key), "owner": rid("user", owner_id)},
    )
    return bool(rows) and rows[0] == key


async def delete_owned(db: Database, owner_id: str, key: str) -> bool:
    """Delete; marked `removed` first in the same transaction, for the change feed (a
    delete there names only the record, see scripts/schema.surql)."""
    result = await db.write(
        "BEGIN; UPDATE library SET removed = true WHERE key = $key AND owner = $owner;"
        " RETURN (DELETE library WHERE key = $key AND owner = $owner RETURN BEFORE); COMMIT;",
        {"key": key, "owner": rid("user", owner_id)},
    )
    return bool(result[-1])
