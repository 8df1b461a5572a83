"""The template catalogue is read once per CATALOGUE_TTL per process (every submission and
page reads it), yet a change made elsewhere (another process's start-up sync, a restore) is
seen within that time, and this process's own sync is seen at once."""

from __future__ import annotations

import json
import time

from app.db import templates as templates_db
from app.db.templates import read_catalogue, sync_catalogue


async def test_catalogue_is_kept_briefly_and_a_sync_is_seen_at_once(db, tmp_path, monkeypatch):
    await sync_catalogue(db)
    slugs = [t.slug for t in await templates_db.list_active(db)]
    assert len(slugs) >= 2
    dropped = slugs[0]
    # This process syncs a catalogue without the first template: seen at once.
    smaller = tmp_path / "templates.json"
    smaller.write_text(json.dumps([t for t in read_catalogue() if t["slug"] != dropped]))
    monkeypatch.setattr(templates_db, "CATALOGUE_TTL", 0.3)
    await sync_catalogue(db, smaller)
    assert await templates_db.by_slug(db, dropped) is None
    assert [t.slug for t in await templates_db.list_active(db)] == slugs[1:]
    # Another process brings it back: this one keeps its copy until that expires …
    await db.write("UPDATE template SET active = true WHERE slug = $s", {"s": dropped})
    assert await templates_db.by_slug(db, dropped) is None
    # … and then reads the catalogue again.
    time.sleep(0.35)
    assert await templates_db.by_slug(db, dropped) is not None
    assert [t.slug for t in await templates_db.list_active(db)] == slugs
