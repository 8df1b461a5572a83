"""The background driver: claims due jobs by lease and takes each one step further.

Each step is short and ends by handing the lease back with the time the job is next due,
so the database, not this process, holds everything needed to go on: a driver that dies
leaves jobs that another (or the restarted) driver picks up once the lease expires. While a
step runs, its lease is renewed every third of its length, so a long step (a finalize) is
never taken over while alive, and a dead driver's jobs wait one short lease, not a long one.

A render that runs in this process (the local renderer, `provider.runs_here`) is the one
exception: between its checks the driver keeps the job's lease (renewed the same way), so no
other process asks about a render it cannot see. If this process dies or stops, the next
driver to take the job finds the render unknown (`RenderLost`) and renders it again."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import os
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from app.db import housekeeping
from app.db import jobs as jobs_db
from app.db.connection import Conflict, ConnectionLost, Database
from app.db.records import VideoJob
from app.jobs import schedule
from app.jobs.crashpoints import crashpoint
from app.jobs.prompts import caption
from app.jobs.service import ACTIVE_VALUES, JobService
from app.jobs.states import Status
from app.observability.logging import get_logger
from app.observability.metrics import Metrics
from app.providers.base import (
    ProviderError,
    RenderLost,
    SubmitRequest,
    TransientProviderError,
    VideoProvider,
)
from app.storage import posters
from app.storage.base import Storage, StorageError, TransientStorageError

log = get_logger("reelforge.driver")

FINALIZE_DOWNLOADS = 24  # results streamed from the provider into storage at once
POSTERS_AT_ONCE = 2  # ffmpeg frame grabs at once (CPU: they share the machine with renders)
WAKE_GAP = 0.02  # seconds: the shortest time between two claim rounds

P = ParamSpec("P")
T = TypeVar("T")

TRANSIENT = (TransientProviderError, TransientStorageError, Conflict, ConnectionLost,
             TimeoutError, OSError)


def video_key(owner_id: str, job_id: str) -> str:
    return f"users/{owner_id}/library/videos/{job_id}.mp4"


class Driver:
    def __init__(
        self, db: Database, service: JobService, provider: VideoProvider, storage: Storage,
        *, work_dir: Path, webhook_url: str | None = None, concurrency: int = 64,
        tick: float = 1.0, max_result_bytes: int = 500 * 1024 * 1024,
        status_interval: float | None = None, metrics: Metrics | None = None,
        lease_seconds: float = schedule.LEASE_SECONDS, timeline_days: float = 0,
        per_person: int | None = None,
    ):
        self.db = db
        self.service = service
        self.provider = provider
        self.storage = storage
        self.work_dir = work_dir
        self.webhook_url = webhook_url
        self.concurrency = concurrency
        self.tick = tick
        self.max_result_bytes = max_result_bytes
        self.metrics = metrics or Metrics()
        self.lease_seconds = lease_seconds
        self.timeline_days = timeline_days
        # Jobs one person may have started at once (MAX_ACTIVE_JOBS); the rest of their
        # pending jobs (a batch's rows) wait, and slots go fairly between people.
        self.per_person = per_person
        self.runs_here = bool(getattr(provider, "runs_here", False))
        # Jobs whose render runs in this process, with their (endpoint, request id): their
        # leases stay with this driver between checks.
        self._rendering: dict[str, tuple[str, str]] = {}
        self._heartbeat_task: asyncio.Task[None] | None = None
        self.provider_name = str(getattr(provider, "name", "unknown"))
        # Seconds between status checks: the provider's own (providers/local.py), else fal's.
        provider_interval: float = getattr(provider, "status_interval",
                                           schedule.STATUS_INTERVAL)
        self._interval = status_interval or provider_interval
        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        # When jobs this driver released are next due (monotonic seconds, a heap): the loop
        # wakes then instead of at its next tick, so a check is not up to a tick late.
        self._due_soon: list[float] = []
        self._wake_at = 0.0  # when the loop, now waiting, wakes by itself (monotonic)
        self._backlog = False  # the last claim round filled every free slot
        self._inflight: dict[str, asyncio.Task[None]] = {}
        # Jobs whose step already handed its lease back in its last write (a transition, or
        # a release carrying the step's counters): the step's end writes nothing more.
        self._released: set[str] = set()
        # Steps that are saving a finished video: they wait on downloads, uploads and
        # posters for seconds, so they do not hold the slots status checks need (up to
        # `concurrency` of them; a crash can leave many jobs finalizing at once).
        self._finalizing: set[str] = set()
        # Finalizing jobs transfer a few at a time (each streams its download into its
        # upload), so that the first ones finish instead of all sharing the bandwidth.
        self._downloads = asyncio.Semaphore(FINALIZE_DOWNLOADS)
        self._posters = asyncio.Semaphore(POSTERS_AT_ONCE)
        self._background: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.db.embedded:
            # Only this process can have the embedded database open (it is locked), so
            # any lease found now belongs to a driver that died: take the jobs back at once.
            await self.db.write(
                "UPDATE video_job SET lease_owner = NONE, lease_until = NONE "
                "WHERE lease_owner != NONE"
            )
        self._loop_task = asyncio.create_task(self._run(), name="job-driver")
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="job-leases")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming, let running steps finish for `grace` seconds, then cancel the rest
        and hand their leases back so the next start resumes them at once."""
        self._stopping = True
        self._wake.set()
        for loop_task in (self._loop_task, self._heartbeat_task):
            if loop_task:
                loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop_task
        pending = list(self._inflight.values()) + list(self._background)
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        with contextlib.suppress(Exception):
            await jobs_db.release_all(self.db, self.id)

    def wake(self) -> None:
        self._wake.set()

    async def _heartbeat(self) -> None:
        """Renew the leases of running steps and of renders running here. A render whose
        lease this driver lost (its job was canceled, or taken over) is stopped."""
        next_purge = time.monotonic() + housekeeping.PURGE_EVERY
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if time.monotonic() >= next_purge:  # housekeeping rides on this loop
                next_purge = time.monotonic() + housekeeping.PURGE_EVERY
                try:
                    await housekeeping.purge_expired(self.db, self.timeline_days)
                except Exception:
                    log.warning("driver.purge_failed")
            held = set(self._inflight) | set(self._rendering)
            try:
                kept = set(await jobs_db.renew(self.db, sorted(held), self.id,
                                               self.lease_seconds))
            except Exception:
                log.warning("driver.renew_failed", jobs=len(held))
                continue
            for job_id in held - kept:
                if job_id in self._rendering and job_id not in self._inflight:
                    endpoint, request_id = self._rendering.pop(job_id)
                    self._spawn(self._cancel_request(job_id, endpoint, request_id))

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    # -- the loop --------------------------------------------------------------------
    async def _run(self) -> None:
        last = 0.0
        while not self._stopping:
            # At most one claim round per WAKE_GAP: wakes that come in quick succession (a
            # burst of submissions, steps finishing one after another) share one round.
            gap = WAKE_GAP - (time.monotonic() - last)
            if gap > 0:
                await asyncio.sleep(gap)
            last = time.monotonic()
            self._wake.clear()
            try:
                await self._claim_due()
            except ConnectionLost as exc:  # the database is away: a line a round, no trace
                log.warning("driver.claim_failed", error=str(exc))
            except Exception:
                log.exception("driver.claim_failed")
            timeout = self._next_timeout()
            self._wake_at = time.monotonic() + timeout
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    def _next_timeout(self) -> float:
        """Until the next tick, or until the earliest job this driver knows to be due (at
        least WAKE_GAP away, so that jobs due close together are claimed in one round)."""
        now = time.monotonic()
        while self._due_soon and self._due_soon[0] <= now:
            heapq.heappop(self._due_soon)
        if not self._due_soon:
            return self.tick
        return min(self.tick, max(WAKE_GAP, self._due_soon[0] - now))

    def _step_done(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(job_id, None)
        self._finalizing.discard(job_id)
        if self._backlog:  # more was due than there were slots: claim again now
            self._wake.set()

    def _busy(self) -> int:
        """Slots taken: steps in flight, less those saving a video (at most `concurrency`)."""
        return len(self._inflight) - min(len(self._finalizing), self.concurrency)

    async def _claim_due(self) -> None:
        free = self.concurrency - self._busy()
        if free <= 0:
            return
        limit = free + len(self._inflight)
        due = await jobs_db.due(self.db, ACTIVE_VALUES, limit, self.id, self.per_person)
        self._backlog = len(due) >= limit
        candidates = [job_id for job_id in due if job_id not in self._inflight]
        while candidates and self._busy() < self.concurrency:
            # Claim as many as there are free slots in one statement; jobs another driver
            # was first to are not returned, so try the next candidates for their slots.
            batch = candidates[: self.concurrency - self._busy()]
            del candidates[: len(batch)]
            for job in await jobs_db.claim_many(
                self.db, batch, self.id, self.lease_seconds, ACTIVE_VALUES
            ):
                job_id = job.id
                task = asyncio.create_task(self._step(job), name=f"job-{job_id}")
                self._inflight[job_id] = task
                task.add_done_callback(functools.partial(self._step_done, job_id))

    async def _step(self, job: VideoJob) -> None:
        job_id = job.id
        structlog.contextvars.bind_contextvars(job_id=job_id)  # this task's log lines
        next_in: float | None = None
        try:
            next_in = await self._advance(job)
        except asyncio.CancelledError:
            raise
        except TRANSIENT as exc:
            attempts = job.attempts + 1
            if attempts >= schedule.MAX_TRANSIENT_ATTEMPTS:
                log.warning("job.gave_up", job_status=job.status.value, attempt=attempts,
                            **error_fields(exc))
                await self._fail(job, f"Gave up after {attempts} attempts: {_describe(exc)}")
            else:
                log.warning("job.transient_error", job_status=job.status.value, attempt=attempts,
                            **error_fields(exc))
                next_in = schedule.retry_after(attempts)
                await self._release(job_id, next_in, attempts=attempts)
        except ProviderError as exc:
            log.warning("job.provider_error", job_status=job.status.value, **error_fields(exc))
            await self._fail(job, str(exc) or "The video provider reported an error")
        except Exception as exc:
            log.exception("job.unexpected_error", job_status=job.status.value,
                          **error_fields(exc))
            await self._fail(job, f"Internal error: {type(exc).__name__}")
        finally:
            if job_id in self._released:
                self._released.discard(job_id)
            elif not self._stopping or next_in is not None:
                with contextlib.suppress(Exception):
                    await self._release(job_id, next_in)
                    self._released.discard(job_id)
            if next_in is not None:
                due = time.monotonic() + next_in
                heapq.heappush(self._due_soon, due)
                if due < self._wake_at:  # the loop sleeps past it: let it sleep less
                    self._wake.set()

    async def _release(self, job_id: str, next_in: float | None, **counters: int) -> None:
        """Hand the lease back (a render running here keeps it, unless stopping), the job due
        again in `next_in`; `counters` (checks, attempts) ride in the same write."""
        keep = (self.lease_seconds if job_id in self._rendering and not self._stopping
                else None)
        await jobs_db.release(self.db, job_id, self.id, next_in, keep, **counters)
        self._released.add(job_id)

    def _released_in(self, job_id: str, next_in: float) -> dict[str, Any]:
        """Fields that fold the lease's release into a step's last transition (one write
        instead of two); none for a render running here, whose lease this driver keeps."""
        if job_id in self._rendering:
            return {}
        return jobs_db.released(next_in)

    # -- one step of one job ---------------------------------------------------------
    async def _advance(self, job: VideoJob) -> float | None:
        status = job.status
        # Past its deadline a job is canceled at the provider and fails, unless the provider
        # has already finished (finalizing, or a webhook said so): that render is paid for.
        if (datetime.now(UTC) >= job.deadline_at and status != Status.FINALIZING
                and not job.provider_done):
            await self._cancel_at_provider(job)
            minutes = round(self.service.settings.job_deadline_seconds / 60)
            await self._fail(job, f"Timed out: the video was not ready after {minutes} minutes")
            return None
        if status == Status.PENDING:
            return await self._submit(job)
        if status in (Status.QUEUED, Status.PROCESSING):
            return await self._check(job)
        if status == Status.FINALIZING:
            await self._finalize(job)
        return None

    async def _request(self, job: VideoJob) -> SubmitRequest:
        """What the provider is asked to render: always the same for the same job."""
        return SubmitRequest(
            endpoint=job.endpoint, prompt=job.prompt,
            image_url=await self._image_url(job), parameters=dict(job.parameters),
            caption=caption(job.variables),
            webhook_url=self.webhook_url,
        )

    async def _submit(self, job: VideoJob) -> float | None:
        crashpoint("before_submit")
        request = await self._request(job)
        request_id = await _retry(self._provider_call("submit", self.provider.submit), request)
        if self.runs_here:
            self._rendering[job.id] = (job.endpoint, request_id)
        crashpoint("after_submit")
        next_in = schedule.next_check(0, bool(self.webhook_url), self._interval)
        moved = await self.service.move(
            job.id, Status.QUEUED, lease=self.id, reason="submitted to provider",
            fields={"provider_request_id": request_id, "webhook": bool(self.webhook_url),
                    "started_at": datetime.now(UTC), "checks": 0, "attempts": 0,
                    **self._released_in(job.id, next_in)},
        )
        if moved is None:  # canceled while we were submitting: stop it at the provider too
            self._spawn(self._cancel_request(job.id, job.endpoint, request_id))
            return None
        if moved.lease_owner is None:
            self._released.add(job.id)
        return next_in

    async def _render_again(self, job: VideoJob) -> None:
        """The render ran in a process that stopped or died: render it here, under the same
        request id (a render is deterministic, so the video is the same)."""
        request_id = _request_id(job)
        await self.provider.submit(await self._request(job), request_id)
        self._rendering[job.id] = (job.endpoint, request_id)
        log.info("job.render_again", job_status=job.status.value)

    async def _check(self, job: VideoJob) -> float | None:
        job_id = job.id
        if not job.provider_done:
            asked = time.monotonic()
            try:
                st = await _retry(self._provider_call("status", self.provider.status),
                                  job.endpoint, _request_id(job))
            except RenderLost:
                await self._render_again(job)
                await self.service.move(
                    job_id, job.status, lease=self.id,
                    reason="rendering again: the server rendering it stopped",
                    fields={"last_log": "Rendering again (the server rendering it stopped)"})
                return self._interval
            checks = job.checks + 1
            if st.state != "completed":
                crashpoint("while_processing")
                to = Status.QUEUED if st.state == "queued" else Status.PROCESSING
                if job.status == Status.PROCESSING:
                    to = Status.PROCESSING  # a provider retry may requeue; we never go back
                last_log = st.logs[-1][:300] if st.logs else job.last_log
                changed = (to != job.status or st.queue_position != job.queue_position
                           or last_log != job.last_log)
                # Counted from when fal was asked, so checks are one interval apart however
                # long this step took (the lease is released with what is left of it).
                next_in = (schedule.next_check(checks, job.webhook, self._interval)
                           - (time.monotonic() - asked))
                # One write either way: the transition hands the lease back, or (nothing
                # seen changed) the release carries the check's count.
                if changed:
                    fields: dict[str, object] = {"checks": checks, "attempts": 0,
                              "queue_position": st.queue_position, "last_log": last_log,
                              **self._released_in(job_id, next_in)}
                    moved = await self.service.move(job_id, to, lease=self.id, fields=fields)
                    if moved is not None and moved.lease_owner is None:
                        self._released.add(job_id)
                else:
                    await self._release(job_id, next_in, checks=checks, attempts=0)
                return next_in
        moved = await self.service.move(
            job_id, Status.FINALIZING, lease=self.id, reason="provider finished",
            fields={"queue_position": None, "attempts": 0},
        )
        if moved is not None:
            await self._finalize(moved)
        return None

    async def _finalize(self, job: VideoJob) -> None:
        """Download, store under a fixed key, then charge + file + complete in one
        transaction guarded by the job's state: repeats find the key stored and the
        transaction refused, so there is one file, one library item, one charge."""
        job_id, owner_id = job.id, job.owner_id
        if job_id in self._inflight:  # its slot goes to the status checks
            self._finalizing.add(job_id)
            if self._backlog:
                self._wake.set()
        key = video_key(owner_id, job_id)
        started = time.monotonic()
        size = await self.storage.size(key)
        downloaded = size is None
        # Best effort: a poster that fails or is missing leaves the job as it would be.
        poster = None if downloaded else await posters.stored_poster(self.storage, key)
        if size is None and self.runs_here:
            await self._rendered_here(job)
        self._rendering.pop(job_id, None)
        if size is None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=self.work_dir, suffix=".mp4")
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                async with self._downloads:
                    size = await _retry(self._transfer, job, key, tmp)
                poster = await posters.make_poster(self.storage, key, tmp, self.work_dir,
                                                   limit=self._posters)
            finally:
                await asyncio.to_thread(tmp.unlink, missing_ok=True)
            crashpoint("after_upload")
        library: dict[str, object] = {
            "key": key, "kind": "video", "content_type": "video/mp4", "size": size,
            "job": job_id, "name": f"{job.template_name}.mp4", "poster_key": poster}
        done = await self.service.move(
            job_id, Status.COMPLETED, lease=self.id, reason="stored and charged",
            fields={"result_key": key, "result_size": size, "poster_key": poster},
            library=library,
        )
        crashpoint("after_charge")
        if done is not None:
            self._released.add(job_id)  # a final move clears the lease
            seconds = time.monotonic() - started
            labels = (job.template or "unknown", self.provider_name)
            self.metrics.finalize_duration.labels(*labels).observe(seconds)
            if downloaded:
                self.metrics.finalize_bytes.labels(*labels).observe(size)
            log.info("job.finalized", bytes=size, duration_s=round(seconds, 3),
                     downloaded=downloaded)
        if done is None:
            current = await jobs_db.get(self.db, job_id)
            if current and current.status == Status.CANCELED:
                await self.storage.delete(key)  # canceled at the last moment: nothing kept
                await self.storage.delete(posters.poster_key(key))

    async def _transfer(self, job: VideoJob, key: str, copy: Path) -> int:
        """One attempt at storing the result: the provider's download streamed into the
        storage's upload, part by part, both running at once; the bytes are also written
        to `copy` (for the poster). A failure on either side fails the attempt as a whole
        (retried from the first byte): the storage stores nothing unless the download ended
        normally, so the fixed key holds a whole video or nothing."""
        self.metrics.provider_requests.labels(self.provider_name, "result").inc()
        chunks = self.provider.stream_result(job.endpoint, _request_id(job),
                                             self.max_result_bytes)
        try:
            async with contextlib.aclosing(chunks):
                return await self.storage.put_stream(key, _then_crashpoint(chunks),
                                                     "video/mp4", copy_to=copy)
        except Exception as exc:
            if isinstance(exc, ProviderError):
                self._provider_failed("result", exc, job.provider_request_id)
            else:
                self._storage_failed("put_stream", exc)
            raise

    async def _rendered_here(self, job: VideoJob) -> None:
        """Before fetching a local render's result: if the render is unknown here (its
        process stopped after it finished, on another machine), render it again and wait;
        the step's lease is renewed meanwhile."""
        try:
            await self.provider.status(job.endpoint, _request_id(job))
            return
        except RenderLost:
            await self._render_again(job)
        while (await self.provider.status(  # noqa: ASYNC110 - the state is the provider's
                job.endpoint, _request_id(job))).state != "completed":
            await asyncio.sleep(0.25)

    # -- helpers ---------------------------------------------------------------------

    async def _fail(self, job: VideoJob, message: str) -> None:
        self._rendering.pop(job.id, None)
        if await self.service.move(job.id, Status.FAILED, reason=message,
                                   fields={"error": message[:500]}) is not None:
            self._released.add(job.id)  # a final move clears the lease

    async def _cancel_at_provider(self, job: VideoJob) -> None:
        if job.provider_request_id:
            await self._cancel_request(job.id, job.endpoint, job.provider_request_id)

    async def _cancel_request(self, job_id: str, endpoint: str, request_id: str) -> None:
        try:
            await _retry(self._provider_call("cancel", self.provider.cancel),
                         endpoint, request_id)
        except ProviderError as exc:
            log.warning("job.provider_cancel_failed", job_id=job_id, **error_fields(exc))

    def _provider_call(self, kind: str,
                       fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """`fn` counted per attempt (requests and errors by kind), failures logged with
        their status and message."""

        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            self.metrics.provider_requests.labels(self.provider_name, kind).inc()
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                self._provider_failed(
                    kind, exc, args[1] if kind != "submit" and len(args) > 1 else None)
                raise

        return call

    def _provider_failed(self, kind: str, exc: Exception, request_id: object) -> None:
        """A provider call failed: counted by kind and transience, and logged."""
        transient = isinstance(exc, TRANSIENT)
        self.metrics.provider_errors.labels(
            self.provider_name, kind, "transient" if transient else "permanent").inc()
        log.warning("provider.error", provider=self.provider_name, kind=kind,
                    transient=transient, request_id=request_id, **error_fields(exc))


    def _storage_failed(self, operation: str, exc: Exception) -> None:
        """A storage call failed: counted by operation and transience, and logged."""
        transient = isinstance(exc, TRANSIENT)
        self.metrics.storage_errors.labels(
            operation, "transient" if transient else "permanent").inc()
        log.warning("storage.error", operation=operation, transient=transient,
                    **error_fields(exc))

    def cancel_later(self, job: VideoJob) -> None:
        """For cancels made outside the driver (the API): tell the provider in the background."""
        self._spawn(self._cancel_at_provider(job))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _image_url(self, job: VideoJob) -> str:
        external = self.storage.external_url(job.start_key)
        if external:
            return external
        import base64
        import mimetypes

        data = await self.storage.get_bytes(job.start_key)
        mime = mimetypes.guess_type(job.start_key)[0] or "image/png"
        return f"data:{mime};base64,{base64.b64encode(data).decode()}"


async def _retry(fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
    """A few quick in-step retries of transient errors; beyond them the step is rescheduled."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(TRANSIENT),
        wait=wait_exponential_jitter(multiplier=0.2, max=2.0),
        stop=stop_after_attempt(3),
        reraise=True,
    ):
        with attempt:
            return await fn(*args, **kwargs)
    raise AssertionError("unreachable")


async def _then_crashpoint(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The chunks, then the `after_download` crash point: every byte has arrived and the
    storage has not yet completed the object."""
    async for chunk in chunks:
        yield chunk
    crashpoint("after_download")


def _request_id(job: VideoJob) -> str:
    """The provider's id of a submitted job (every state past pending has one)."""
    if job.provider_request_id is None:
        raise ProviderError(f"job {job.id} has no provider request id")
    return job.provider_request_id


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


_HTTP_STATUS = re.compile(r"\b(?:HTTP|S3) (\d{3})\b")


def error_fields(exc: BaseException) -> dict[str, Any]:
    """What a log line says about an error: its kind, HTTP status (when there was one)
    and message (the logging redacts URLs' query strings and other secrets)."""
    status = getattr(exc, "status_code", None)
    if status is None:
        found = _HTTP_STATUS.search(str(exc))
        status = int(found.group(1)) if found else None
    source = ("provider" if isinstance(exc, ProviderError) else
              "storage" if isinstance(exc, StorageError) else
              "database" if isinstance(exc, Conflict) else "other")
    return {"error_type": type(exc).__name__, "error_source": source, "http_status": status,
            "error": str(exc)[:500]}
