"""The template catalogue: loading scripts/templates.json and reading it."""

from __future__ import annotations

import json
import time
from functools import cache
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import msgspec

from app.db.connection import Database
from app.db.records import Template, TemplateVariable, decode_all

CATALOGUE_PATH = Path(__file__).resolve().parents[2] / "scripts" / "templates.json"


def read_catalogue(path: Path = CATALOGUE_PATH) -> list[dict[str, Any]]:
    catalogue: list[dict[str, Any]] = json.loads(path.read_text())
    return catalogue


@cache
def variable_labels() -> dict[str, dict[str, str]]:
    """{slug: {variable name: label}} from the catalogue file, read once per process: job
    cards show "Brand: Aurora" without a query per render (the database's catalogue is
    synced from this file at start-up)."""
    return {t["slug"]: {v.name: v.shown_label for v in msgspec.convert(
                t.get("variables", []), list[TemplateVariable])}
            for t in read_catalogue()}


async def sync_catalogue(db: Database, path: Path = CATALOGUE_PATH) -> int:
    """Upsert every template from the file (by slug); templates no longer in it are hidden."""
    items = []
    for position, t in enumerate(read_catalogue(path)):
        items.append({
            "slug": t["slug"], "name": t["name"], "description": t["description"],
            "prompt": t["prompt"], "variables": t.get("variables", []),
            "endpoint": t["endpoint"], "parameters": t.get("parameters", {}),
            "credits": int(t["credits"]), "typical_seconds": int(t.get("typicalSeconds", 120)),
            "preview": t.get("preview"), "position": position, "active": True,
        })
    await db.write(
        """
        BEGIN;
        UPDATE template SET active = false WHERE slug NOT IN $slugs;
        FOR $t IN $items { UPSERT type::thing("template", $t.slug) CONTENT $t; };
        COMMIT;
        """,
        {"items": items, "slugs": [i["slug"] for i in items]},
    )
    _cached.pop(db, None)
    return len(items)


# The catalogue changes only when a process syncs it at start-up (or a restore), yet every
# submission and page reads it: each process keeps it for a few seconds, per database, so a
# change made by another process (a deploy, a restore) is seen within CATALOGUE_TTL.
CATALOGUE_TTL = 10.0
_cached: WeakKeyDictionary[Database, tuple[float, list[Template]]] = WeakKeyDictionary()


async def list_active(db: Database) -> list[Template]:
    hit = _cached.get(db)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    found = decode_all(await db.read_one(
        "SELECT * FROM template WHERE active = true ORDER BY position"), Template)
    _cached[db] = (time.monotonic() + CATALOGUE_TTL, found)
    return found


async def by_slug(db: Database, slug: str) -> Template | None:
    return next((t for t in await list_active(db) if t.slug == slug), None)
