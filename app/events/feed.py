"""Follows the database's change feeds, so that a person's streams on this process see what
other processes did: job cards, toasts, credits and library tiles, admin rows, and the end
of a signed-out session's streams.

Only against a SurrealDB server (several processes); the embedded database has one process,
which publishes its own changes as it makes them. Publishing locally stays immediate; the
feed brings the same changes again a moment later, and the notifier drops those it has
already sent (each record carries a `rev` the database bumps on every write, see
app/events/notifier.py), so a stale card never replaces a newer one.

Position: SurrealDB numbers the changes of a database with one versionstamp sequence shared
by its tables. `SHOW CHANGES … SINCE n` takes n in the sequence's own units (a versionstamp
is that number shifted left 16 bits) and is inclusive, so each poll asks from the last seen
and skips what it already had. No statement returns the latest versionstamp, so on start it
is found by a galloping search on `SHOW CHANGES FOR DATABASE` (about 25 short queries).
A process that could not read the feed for longer than it is kept (or that failed to) has
lost changes: it resynchronises its streams with a snapshot and starts again from now."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from app.db import changes
from app.db.connection import ConnectionLost, Database
from app.db.records import LibraryItem, User, decode
from app.events.broker import Broker
from app.observability.logging import get_logger

log = get_logger("reelforge.feed")

POLL_SECONDS = 0.05  # the p99 target across processes is 250 ms
PAGE = 1000  # transactions per poll (the most SHOW CHANGES returns)
RETENTION_SECONDS = 3600.0  # scripts/changefeeds.surql keeps 1 h
VS_SHIFT = 16


def since_of(versionstamp: int) -> int:
    return versionstamp >> VS_SHIFT


class FeedFollower:
    def __init__(self, db: Database, notifier: Any, broker: Broker,
                 poll_seconds: float = POLL_SECONDS):
        self.db = db
        self.notifier = notifier
        self.broker = broker
        self.poll_seconds = poll_seconds
        self.position = 0  # the last versionstamp handled
        self.last_read = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self.changes_seen = 0

    async def start(self) -> None:
        self.position = await self.current_position()
        self.last_read = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="change-feed")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def current_position(self) -> int:
        """The versionstamp of the database's latest change (0 when there is none)."""

        async def first_from(since: int) -> int | None:
            rows = await self.db.read_one(
                f"SHOW CHANGES FOR DATABASE SINCE {int(since)} LIMIT 1")
            return int(rows[0]["versionstamp"]) if rows else None

        if await first_from(1) is None:
            return 0
        low, high = 1, 2  # some change at or after `low`; none at or after `high`
        while await first_from(high) is not None:
            low, high = high, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            if await first_from(middle) is None:
                high = middle
            else:
                low = middle
        return await first_from(low) or 0

    async def _run(self) -> None:
        while True:
            try:
                if time.monotonic() - self.last_read > RETENTION_SECONDS * 0.9:
                    await self.resync("fell behind the change feed's retention")
                await self.poll()
                self.last_read = time.monotonic()
            except asyncio.CancelledError:
                raise
            except ConnectionLost as exc:  # the database is away: a line a poll, no trace
                log.warning("feed.poll_failed", error=str(exc))
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("feed.poll_failed")
                await asyncio.sleep(1.0)
            await asyncio.sleep(self.poll_seconds)

    async def poll(self) -> int:
        """Read what changed since the last poll and publish it; returns how many changes.
        One statement for the whole database: the tables with a change feed are exactly
        the ones followed (scripts/changefeeds.surql)."""
        rows = await self.db.read_one(
            f"SHOW CHANGES FOR DATABASE SINCE {since_of(self.position)} LIMIT {PAGE}")
        handled = 0
        for row in rows or []:
            versionstamp = int(row["versionstamp"])
            if versionstamp <= self.position:
                continue  # SINCE is inclusive: the last poll's last row comes again
            for change in row.get("changes", []):
                try:
                    await self._apply(change)
                except Exception:  # one bad change must not stop the feed
                    log.exception("feed.apply_failed")
                handled += 1
            self.position = versionstamp
        self.changes_seen += handled
        return handled

    async def _apply(self, change: dict[str, Any]) -> None:
        if "update" in change:
            record = change["update"]
            table = changes.table_of(record)
            if table == "video_job":
                await self.notifier.publish("job", changes.job_of(record))
            elif table == "user":
                await self.notifier.publish_credits(decode(record, User))
            elif table == "library":
                await self.notifier.publish_library(decode(record, LibraryItem))
        elif "delete" in change and changes.table_of(change["delete"]) == "session":
            self.broker.end_session(changes.key_of(change["delete"]))

    async def resync(self, why: str) -> None:
        """Send every open stream of this process the current state again."""
        log.warning("feed.resync", reason=why, streams=self.broker.subscriber_count)
        self.position = await self.current_position()
        self.last_read = time.monotonic()
        for user_id in self.broker.user_ids():
            self.broker.publish(user_id, await self.notifier.snapshot(user_id))
