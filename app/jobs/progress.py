"""How far along a job is, for the card, the toast and the status API: the provider's own
progress when its log says it ("Rendering 46%", fal's "45%|████ | 9/20"), otherwise an
estimate from how long the last completed jobs of the same template and provider took,
otherwise the template's `typical_seconds`."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

from app.db import jobs as jobs_db
from app.db.connection import Database
from app.db.records import VideoJob
from app.jobs.states import FINAL, Status
from app.observability.logging import get_logger

log = get_logger("reelforge.progress")

# A percentage standing on its own: not part of a word or a longer number ("v1.5%").
_PERCENT = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d+)?)\s?%")
HISTORY_SAMPLE = 50
HISTORY_TTL = 60.0  # seconds a median is reused: an estimate, not the truth


def log_progress(line: str | None) -> float | None:
    """The fraction (0–1) a provider's log line reports, or None when it reports none."""
    if not line:
        return None
    m = _PERCENT.search(line)
    if m is None:
        return None
    value = float(m.group(1))
    return value / 100 if value <= 100 else None


class Durations:
    """The median run time (created_at → finished_at: what the person waits, and what the
    card's "elapsed" counts) of the last completed jobs per (template, provider), cached in
    the process. `prime` runs one query per key at most every HISTORY_TTL seconds; rendering
    only reads the cache, so a card render never waits for the database."""

    def __init__(self, ttl: float = HISTORY_TTL, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[float, float | None]] = {}

    def seconds(self, template: str, provider: str) -> float | None:
        hit = self._cache.get((template, provider))
        return hit[1] if hit else None

    async def prime(self, db: Database, jobs: Iterable[VideoJob]) -> None:
        now = self.clock()
        keys = {(j.template, j.provider) for j in jobs if j.status not in FINAL}
        for key in keys:
            hit = self._cache.get(key)
            if hit and hit[0] > now:
                continue
            try:
                runs = await jobs_db.recent_durations(db, *key, limit=HISTORY_SAMPLE)
            except Exception:  # an estimate must never hold up a card: use what we had
                log.exception("progress.history_failed", template=key[0], provider=key[1])
                runs = None
            if runs is None:
                self._cache[key] = (now + self.ttl, hit[1] if hit else None)
                continue
            self._cache[key] = (now + self.ttl, statistics.median(runs) if runs else None)


def estimate(job: VideoJob, elapsed: float, now: float,
             durations: Durations | None) -> dict[str, Any]:
    """{"progress": 0–100, "source": "provider"|"history"|"template", "eta": seconds or
    None, "expected": seconds}. `eta` is given only from the provider's progress or from
    history: the template's figure is a rough "usually about", not a countdown."""
    history = durations.seconds(job.template, job.provider) if durations else None
    expected = history or max(1, job.typical_seconds or 120)
    source = "history" if history else "template"
    fraction = log_progress(job.last_log) if job.status == Status.PROCESSING else None
    if fraction is not None and fraction > 0:
        # The provider's rate so far, from when it was handed the job.
        started = job.started_at or job.created_at
        running = max(0.0, now - started.timestamp())
        eta = running * (1 - fraction) / fraction
        return {"progress": int(100 * fraction), "source": "provider", "eta": eta,
                "expected": expected}
    if fraction is not None:  # "Rendering 0%": the render has started, nothing more yet
        return {"progress": 0, "source": "provider",
                "eta": max(0.0, expected - elapsed) if history else None, "expected": expected}
    return {"progress": min(95, int(100 * elapsed / expected)), "source": source,
            "eta": max(0.0, expected - elapsed) if history else None, "expected": expected}


def eta_text(seconds: float) -> str:
    """"about 40 s left", rounded as a person would say it."""
    if seconds < 10:
        return "a few seconds left"
    if seconds < 90:
        return f"about {int(round(seconds / 5) * 5)} s left"
    return f"about {round(seconds / 60)} min left"


def typical_text(seconds: float) -> str:
    return (f"usually about {round(seconds / 60)} min" if seconds >= 90
            else f"usually about {int(seconds)} s")
