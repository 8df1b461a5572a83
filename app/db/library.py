"""Queries on library items (uploaded images and finished videos)."""

from __future__ import annotations

from typing import Any

from app.db.connection import Database, rid


async def add(
    db: Database, owner_id: str, key: str, kind: str, content_type: str, size: int,
    name: str | None = None,
) -> dict[str, Any]:
    return await db.write_one(
        "CREATE ONLY library CONTENT $item",
        {"item": {"owner": rid("user", owner_id), "key": key, "kind": kind,
                  "content_type": content_type, "size": size, "name": name}},
    )


async def list_for(db: Database, owner_id: str, kind: str | None = None) -> list[dict[str, Any]]:
    where = "owner = $owner" + (" AND kind = $kind" if kind else "")
    return await db.read_one(
        f"SELECT * FROM library WHERE {where} ORDER BY created_at DESC",  # noqa: S608
        {"owner": rid("user", owner_id), "kind": kind},
    )


async def get_owned(db: Database, owner_id: str, key: str) -> dict[str, Any] | None:
    rows = await db.read_one(
        "SELECT * FROM library WHERE key = $key AND owner = $owner LIMIT 1",
        {"key": key, "owner": rid("user", owner_id)},
    )
    return rows[0] if rows else None


async def delete_owned(db: Database, owner_id: str, key: str) -> bool:
    rows = await db.write_one(
        "DELETE library WHERE key = $key AND owner = $owner RETURN BEFORE",
        {"key": key, "owner": rid("user", owner_id)},
    )
    return bool(rows)
