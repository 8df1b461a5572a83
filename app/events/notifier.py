"""Turns job, credit and library changes into rendered events for the broker. Rendering
happens once per change, and only when the person has a stream open.

A change can arrive twice: from this process's own write, and again from the change feed
(app/events/feed.py), and a change made by another process can arrive after a newer one
made here. Each job and user record carries `rev`, bumped by the database on every write;
a state is sent only when its rev is newer than the last one sent for that record and
something a person sees has changed (lease and bookkeeping writes change nothing visible)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

import msgspec

from app.db import batches as batches_db
from app.db import jobs as jobs_db
from app.db import library as library_db
from app.db import users as users_db
from app.db.connection import Database
from app.db.records import Batch, LibraryItem, RunningBatch, User, VideoJob
from app.events.broker import Broker, ServerEvent
from app.jobs.states import FINAL, Status
from app.observability.logging import get_logger
from app.storage.base import Storage
from app.web import admin_view
from app.web.render import Fragments

log = get_logger("reelforge.events")

REMEMBERED = 20_000  # records whose last sent state is kept (least recently sent dropped)
ACTIVE_SHOWN = 100  # running jobs, and jobs ended while away, given cards in a snapshot
ACTIVE_STATUSES = sorted(s.value for s in Status if s not in FINAL)
BATCH_COALESCE = 0.05  # seconds: changes of a batch's rows within this go out as one card


def job_look(job: VideoJob) -> tuple[object, ...]:
    """What a person (or an admin) can see of a job: a change here is worth an event."""
    return (job.status, job.queue_position, job.last_log, job.error, job.result_key,
            job.attempts)


def credits_look(user: User) -> tuple[int, int]:
    return (user.balance, user.reserved)


class Notifier:
    def __init__(self, db: Database, broker: Broker, fragments: Fragments, storage: Storage):
        self.db = db
        self.broker = broker
        self.fragments = fragments
        self.storage = storage
        # Admins with a stream open, learnt when their stream takes its snapshot. Every job
        # change also goes to their streams (the admin pages' rows and timelines), through
        # their own channels: no extra subscription per stream.
        self.admins: set[str] = set()
        # key -> (rev, the look's first item, hash of the look): what was last sent of a
        # record, kept small: not the look itself, whose strings would stay alive with it.
        # Two different looks with the same 64-bit hash would skip one update of a card.
        self._sent: OrderedDict[str, tuple[int, object, int]] = OrderedDict()
        # Batches whose card is about to be sent again (one render for a burst of changes
        # of its rows, e.g. 100 rows created at once), by batch id.
        self._batches_due: dict[str, asyncio.Task[None]] = {}

    def _newer(self, key: str, rev: int, look: tuple[object, ...]) -> bool:
        """Whether this state of a record (its `rev`) is worth sending (and if so,
        remember it)."""
        last = self._sent.get(key)
        seen = (rev, look[0], hash(look))
        if last is not None and (rev <= last[0] or seen[2] == last[2]):
            if rev > last[0]:
                self._sent[key] = seen
            return False
        self._sent[key] = seen
        self._sent.move_to_end(key)
        while len(self._sent) > REMEMBERED:
            self._sent.popitem(last=False)
        return True

    def _watched(self, user_id: str) -> bool:
        return self.broker.has_subscribers(user_id) or bool(self.admins)

    async def publish_batch_made(self, user_id: str, batch_id: str) -> None:
        """A new batch (or new rows of one): its card, the admin queue's new rows, and the
        credits it holds."""
        self.batch_soon(user_id, batch_id)
        if self.admins:  # the admin queue lists each new row
            batch = await batches_db.get_owned(self.db, batch_id, user_id)
            rows = await batches_db.jobs_of(self.db, [batch] if batch else [])
            for row in rows.values():
                if row.status == Status.PENDING and self._newer(
                        f"job:{row.id}", row.rev, job_look(row)):
                    await self.publish_admin(row)
        await self.publish_credits_of(user_id)

    async def publish_credits_of(self, user_id: str) -> None:
        if self.broker.has_subscribers(user_id):
            user = await users_db.by_id(self.db, user_id)
            if user:
                await self.publish_credits(user)

    async def publish(self, kind: str, job: VideoJob) -> None:
        """A change of `job`: its card ("job"), its owner's credits ("credits") or the
        video it filed in the library ("library")."""
        user_id = job.owner_id
        if kind == "job" and job.batch:
            await self.publish_row(user_id, job)
        elif kind == "job":
            key = f"job:{job.id}"
            # A job this process has not sent before goes out as a new card (an upsert in
            # the page): its first state here may be a later one, e.g. when another
            # process's driver moved it before this process's feed brought its creation.
            last = self._sent.get(key)
            # Its end is toasted once: a later change of an ended job only redraws its card.
            ended = last is None or last[1] not in FINAL
            if self._watched(user_id) and self._newer(key, job.rev, job_look(job)):
                await self.publish_job(user_id, job, new=last is None, toast=ended)
        elif kind == "credits":
            await self.publish_credits_of(user_id)
        elif (kind == "library" and job.result_key
              and self.broker.has_subscribers(user_id)):
            item = await library_db.get_owned(self.db, user_id, job.result_key)
            if item:
                await self.publish_library(item)

    async def publish_job(self, user_id: str, job: VideoJob, new: bool = False,
                          toast: bool = True) -> None:
        if self.admins:
            await self.publish_admin(job)
        if not self.broker.has_subscribers(user_id):
            return
        events = await self.job_events(job, new=new or job.status == Status.PENDING,
                                       toast=toast)
        if self.broker.publish(user_id, events) and job.status in FINAL:
            await jobs_db.mark_announced(self.db, [job.id])

    async def publish_row(self, user_id: str, job: VideoJob) -> None:
        """A batch's row: its card in place (where a list shows it), the notice about work
        in progress, and soon its batch's card; never a toast of its own (the batch has
        one, when it ends)."""
        if not (self._watched(user_id) and self._newer(f"job:{job.id}", job.rev,
                                                        job_look(job))):
            return
        if self.admins:
            await self.publish_admin(job)
        if not self.broker.has_subscribers(user_id):
            return
        events = await self.job_events(job, new=False, toast=False)
        if self.broker.publish(user_id, events) and job.status in FINAL:
            await jobs_db.mark_announced(self.db, [job.id])
        if job.batch:
            self.batch_soon(user_id, job.batch)

    def batch_soon(self, user_id: str, batch_id: str) -> None:
        """Send the batch's card in a moment, once for all the changes until then."""
        if batch_id in self._batches_due or not self.broker.has_subscribers(user_id):
            return

        async def send() -> None:
            try:
                await asyncio.sleep(BATCH_COALESCE)
                self._batches_due.pop(batch_id, None)
                await self.publish_batch(user_id, batch_id)
            except Exception:  # a card must never hold up a job
                log.exception("events.batch_render_failed", batch_id=batch_id)
            finally:
                self._batches_due.pop(batch_id, None)

        self._batches_due[batch_id] = asyncio.get_running_loop().create_task(send())

    async def publish_batch(self, user_id: str, batch_id: str) -> None:
        """The batch's card (an upsert: the page files it by creation, or replaces it), and
        once the last row has ended, the batch's one notice (once per process)."""
        from app.web.batch_views import batch_view

        batch = await batches_db.get_owned(self.db, batch_id, user_id)
        if batch is None:
            return
        view = batch_view(batch, await batches_db.jobs_of(self.db, [batch]))
        events = [ServerEvent("jobs", self.fragments.batch_card(view))]
        if view["final"] and self._newer(f"batch-done:{batch_id}", 1, ("ended",)):
            events.append(ServerEvent("toasts", self.fragments.batch_toast(view)))
        self.broker.publish(user_id, events)

    async def publish_credits(self, user: User) -> None:
        user_id = user.id
        if self.broker.has_subscribers(user_id) and self._newer(
                f"user:{user_id}", user.rev, credits_look(user)):
            self.broker.publish(user_id, [ServerEvent("credits", self.fragments.credits(user))])

    async def publish_library(self, item: LibraryItem) -> None:
        """A finished video's tile (uploads are shown by the page that made them), or an
        item's removal (the change feed brings it marked `removed`)."""
        user_id = item.owner_id
        if item.removed:
            self.publish_library_removed(user_id, item.key)
            return
        if item.kind != "video" or not self.broker.has_subscribers(user_id):
            return
        if not self._newer(f"library:{item.key}", 1, ("filed",)):
            return
        url = await self.storage.url(item.key)
        poster = await self.storage.url(item.poster_key) if item.poster_key else None
        self.broker.publish(user_id, [ServerEvent(
            "library", self.fragments.library_tile(item, url, poster))])

    def publish_library_removed(self, user_id: str, key: str) -> None:
        """An item was deleted: the person's other pages drop its tile and, if it was their
        start image, pick another (static/app.js). The data is the key (safe characters
        only, app/storage/keys.py). Sent once per process, whichever way it learnt of it."""
        if self.broker.has_subscribers(user_id) and self._newer(
                f"library-removed:{key}", 1, ("removed",)):
            self.broker.publish(user_id, [ServerEvent("library-removed", key)])

    async def publish_admin(self, job: VideoJob) -> None:
        watching = [a for a in list(self.admins) if self.broker.has_subscribers(a)]
        self.admins.intersection_update(watching)  # their last stream closed: forget them
        if not watching:
            return
        try:
            events = await self.admin_events(job)
        except Exception:  # an admin view must never hold up a job
            log.exception("events.admin_render_failed", job_id=job.id)
            return
        for admin_id in watching:
            self.broker.publish(admin_id, events)

    async def admin_events(self, job: VideoJob) -> list[ServerEvent]:
        """A queue row (new jobs are added to the queue's top) and the live detail."""
        job_id = job.id
        owner = await users_db.by_id(self.db, job.owner_id)
        email = owner.email if owner else None
        row = admin_view.row_html(self.fragments, job, email)
        detail = admin_view.detail_html(self.fragments, job, email,
                                        await jobs_db.timeline(self.db, job_id))
        first = (ServerEvent("admin-jobs", row) if job.status == Status.PENDING
                 else ServerEvent(f"admin-job-{job_id}", row))
        return [first, ServerEvent(f"admin-job-{job_id}-detail", detail)]

    async def job_events(self, job: VideoJob, new: bool,
                         toast: bool = True) -> list[ServerEvent]:
        """A job's card, a short toast if it has just ended (`toast`), and the one notice
        about work in progress, counted again from the database (every tab and process
        then shows the same count)."""
        video_url = await self.storage.url(job.result_key) if job.result_key else None
        await self.fragments.durations.prime(self.db, [job])  # a query per minute at most
        card = self.fragments.job_card(job, video_url)
        events = [ServerEvent("jobs" if new else f"job-{job.id}", card),
                  await self.progress_event(job.owner_id)]
        if toast and job.status in FINAL:  # after the notice: the last one's takes its place
            events.append(ServerEvent("toasts", self.fragments.toast(job)))
        return events

    async def progress_event(self, user_id: str) -> ServerEvent:
        """The notice about the person's running jobs. Its version is the time of the read,
        taken before it: a later read shows a later state (static/app.js keeps the newest;
        the clocks of several hosts must agree to within the time between two changes)."""
        version = int(time.time() * 1000)
        active = await active_jobs(self.db, user_id)
        await self.fragments.durations.prime(self.db, active)
        return ServerEvent("toast-progress", self.fragments.progress_toast(
            active, version, await self.batches_running(active)))

    async def batches_running(self, active: list[VideoJob]) -> list[RunningBatch]:
        """The batches among the running jobs, for the notice: name, rows, rows to go."""
        left: dict[str, int] = {}
        for job in active:
            if job.batch:
                left[job.batch] = left.get(job.batch, 0) + 1
        return [msgspec.structs.replace(b, left=left.get(b.id, 0))
                for b in await batches_db.running(self.db, list(left))]

    async def snapshot(self, user_id: str) -> list[ServerEvent]:
        """What a stream sends first: the cards of active jobs and of jobs that ended while
        nobody was watching (oldest first, so the page, which files each card by its
        creation time, ends up newest first also among jobs made in the same second), the
        notice about work in progress, the balance, and one toast that sums up what ended
        while the person was away (announced once)."""
        version = int(time.time() * 1000)
        active = await active_jobs(self.db, user_id)
        ended = await jobs_db.unannounced(self.db, user_id, [s.value for s in FINAL])
        ended.sort(key=lambda j: j.created_at)
        events: list[ServerEvent] = []
        await self.fragments.durations.prime(self.db, active)
        # The newest of the ended ones: a page lists at most this many cards anyway.
        shown = sorted([*active, *ended[-ACTIVE_SHOWN:]], key=lambda j: j.created_at)
        batches: list[str] = []
        for job in shown:
            if job.batch:  # a batch is one card, sent below
                if job.batch not in batches:
                    batches.append(job.batch)
                continue
            video_url = await self.storage.url(job.result_key) if job.result_key else None
            events.append(ServerEvent("jobs", self.fragments.job_card(job, video_url)))
        if batches:
            from app.web.batch_views import batch_view

            found: list[Batch] = [b for b in [await batches_db.get_owned(self.db, b, user_id)
                                              for b in batches] if b]
            rows = await batches_db.jobs_of(self.db, found)
            for batch in found:
                view = batch_view(batch, rows)
                events.append(ServerEvent("jobs", self.fragments.batch_card(view)))
                if view["final"]:  # ended while away: the summary covers it; not again
                    self._newer(f"batch-done:{batch.id}", 1, ("ended",))
        events.append(ServerEvent("toast-progress",
                                  self.fragments.progress_toast(
                                      active, version, await self.batches_running(active))))
        user = await users_db.by_id(self.db, user_id)
        if user:
            events.append(ServerEvent("credits", self.fragments.credits(user)))
            if user.admin:
                self.admins.add(user_id)
        if len(ended) == 1:
            events.append(ServerEvent("toasts", self.fragments.toast(ended[0], announce=True)))
        elif ended:
            events.append(ServerEvent("toasts", self.fragments.away_toast(ended)))
        await jobs_db.mark_announced(self.db, [j.id for j in ended])
        return events


async def active_jobs(db: Database, user_id: str) -> list[VideoJob]:
    """The person's running jobs, newest first (by the owner's index)."""
    return await jobs_db.list_for(db, user_id, ACTIVE_STATUSES, limit=ACTIVE_SHOWN)
