"""The background driver: claims due jobs by lease and takes each one step further.

Each step is short and ends by handing the lease back with the time the job is next due,
so the database, not this process, holds everything needed to go on: a driver that dies
leaves jobs that another (or the restarted) driver picks up once the lease expires."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from app.db import jobs as jobs_db
from app.db.connection import Conflict, Database
from app.jobs import schedule
from app.jobs.crashpoints import crashpoint
from app.jobs.service import ACTIVE_VALUES, JobService
from app.jobs.states import Status
from app.providers.base import (
    ProviderError,
    SubmitRequest,
    TransientProviderError,
    VideoProvider,
)
from app.storage.base import Storage, TransientStorageError

log = logging.getLogger("reelforge.driver")

TRANSIENT = (TransientProviderError, TransientStorageError, Conflict, TimeoutError, OSError)


def video_key(owner_id: str, job_id: str) -> str:
    return f"users/{owner_id}/library/videos/{job_id}.mp4"


class Driver:
    def __init__(
        self, db: Database, service: JobService, provider: VideoProvider, storage: Storage,
        *, work_dir: Path, webhook_url: str | None = None, concurrency: int = 64,
        tick: float = 1.0, max_result_bytes: int = 500 * 1024 * 1024,
        status_interval: float | None = None,
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
        self._interval = status_interval or getattr(
            provider, "status_interval", schedule.STATUS_INTERVAL
        )
        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task] = {}
        self._background: set[asyncio.Task] = set()
        self._loop_task: asyncio.Task | None = None
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

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming, let running steps finish for `grace` seconds, then cancel the rest
        and hand their leases back so the next start resumes them at once."""
        self._stopping = True
        self._wake.set()
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
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

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    # -- the loop --------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self._claim_due()
            except Exception:
                log.exception("driver: claiming due jobs failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.tick)

    async def _claim_due(self) -> None:
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            return
        for job_id in await jobs_db.due(self.db, ACTIVE_VALUES, free + len(self._inflight)):
            if job_id in self._inflight or len(self._inflight) >= self.concurrency:
                continue
            job = await jobs_db.claim(
                self.db, job_id, self.id, schedule.LEASE_SECONDS, ACTIVE_VALUES
            )
            if job is None:
                continue  # another driver was first
            task = asyncio.create_task(self._step(job), name=f"job-{job_id}")
            self._inflight[job_id] = task
            task.add_done_callback(lambda _t, j=job_id: self._inflight.pop(j, None))

    async def _step(self, job: dict[str, Any]) -> None:
        job_id = str(job["id"].id)
        next_in: float | None = None
        try:
            next_in = await self._advance(job)
        except asyncio.CancelledError:
            raise
        except TRANSIENT as exc:
            attempts = int(job.get("attempts", 0)) + 1
            if attempts >= schedule.MAX_TRANSIENT_ATTEMPTS:
                await self._fail(job, f"Gave up after {attempts} attempts: {_describe(exc)}")
            else:
                log.warning("job %s: transient error (attempt %d): %s", job_id, attempts,
                            _describe(exc))
                await jobs_db.update(self.db, job_id, {"attempts": attempts}, self.id)
                next_in = schedule.retry_after(attempts)
        except ProviderError as exc:
            await self._fail(job, str(exc) or "The video provider reported an error")
        except Exception as exc:
            log.exception("job %s: unexpected error", job_id)
            await self._fail(job, f"Internal error: {type(exc).__name__}")
        finally:
            if not self._stopping or next_in is not None:
                with contextlib.suppress(Exception):
                    await jobs_db.release(self.db, job_id, self.id, next_in)

    # -- one step of one job ---------------------------------------------------------
    async def _advance(self, job: dict[str, Any]) -> float | None:
        status = job["status"]
        if job.get("cancel_requested"):
            await self._cancel_at_provider(job)
            await self.service.move(_id(job), Status.CANCELED, lease=self.id,
                                    reason="canceled", fields={"error": "Canceled"})
            return None
        if datetime.now(UTC) >= job["deadline_at"] and status != Status.FINALIZING:
            await self._cancel_at_provider(job)
            minutes = round(self.service.settings.job_deadline_seconds / 60)
            await self._fail(job, f"Timed out: the video was not ready after {minutes} minutes")
            return None
        if status == Status.PENDING:
            return await self._submit(job)
        if status in (Status.QUEUED, Status.PROCESSING):
            return await self._check(job)
        if status == Status.FINALIZING:
            await jobs_db.update(self.db, _id(job), {
                "lease_until": _in(schedule.FINALIZE_LEASE_SECONDS)}, self.id)
            await self._finalize(job)
        return None

    async def _submit(self, job: dict[str, Any]) -> float | None:
        crashpoint("before_submit")
        request = SubmitRequest(
            endpoint=job["endpoint"], prompt=job["prompt"],
            image_url=await self._image_url(job), parameters=dict(job["parameters"]),
            caption=" · ".join(v for v in job["variables"].values() if v)[:80],
            webhook_url=self.webhook_url,
        )
        request_id = await _retry(self.provider.submit, request)
        crashpoint("after_submit")
        moved = await self.service.move(
            _id(job), Status.QUEUED, lease=self.id, reason="submitted to provider",
            fields={"provider_request_id": request_id, "webhook": bool(self.webhook_url),
                    "started_at": datetime.now(UTC), "checks": 0, "attempts": 0},
        )
        if moved is None:  # canceled while we were submitting: stop it at the provider too
            self._spawn(self._cancel_at_provider({**job, "provider_request_id": request_id}))
            return None
        return schedule.next_check(0, bool(self.webhook_url), self._interval)

    async def _check(self, job: dict[str, Any]) -> float | None:
        job_id = _id(job)
        if not job.get("provider_done"):
            st = await _retry(self.provider.status, job["endpoint"], job["provider_request_id"])
            checks = int(job.get("checks", 0)) + 1
            if st.state != "completed":
                crashpoint("while_processing")
                to = Status.QUEUED if st.state == "queued" else Status.PROCESSING
                if job["status"] == Status.PROCESSING:
                    to = Status.PROCESSING  # a provider retry may requeue; we never go back
                last_log = st.logs[-1][:300] if st.logs else job.get("last_log")
                changed = (to != job["status"] or st.queue_position != job.get("queue_position")
                           or last_log != job.get("last_log"))
                fields = {"checks": checks, "attempts": 0, "queue_position": st.queue_position,
                          "last_log": last_log}
                if changed:
                    await self.service.move(job_id, to, lease=self.id, fields=fields)
                else:
                    await jobs_db.update(self.db, job_id, {"checks": checks}, self.id)
                return schedule.next_check(checks, job["webhook"], self._interval)
        job = await self.service.move(
            job_id, Status.FINALIZING, lease=self.id, reason="provider finished",
            fields={"queue_position": None, "attempts": 0,
                    "lease_until": _in(schedule.FINALIZE_LEASE_SECONDS)},
        )
        if job is not None:
            await self._finalize(job)
        return None

    async def _finalize(self, job: dict[str, Any]) -> None:
        """Download, store under a fixed key, then charge + file + complete in one
        transaction guarded by the job's state: repeats find the key stored and the
        transaction refused, so there is one file, one library item, one charge."""
        job_id, owner_id = _id(job), str(job["owner"].id)
        key = video_key(owner_id, job_id)
        size = await self.storage.size(key)
        if size is None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=self.work_dir, suffix=".mp4")
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                fetched = await _retry(
                    self.provider.fetch_result, job["endpoint"], job["provider_request_id"],
                    tmp, self.max_result_bytes,
                )
                crashpoint("after_download")
                await _retry(self.storage.put_file, key, tmp, "video/mp4")
                size = fetched.size
            finally:
                await asyncio.to_thread(tmp.unlink, missing_ok=True)
            crashpoint("after_upload")
        library = {"owner": job["owner"], "key": key, "kind": "video",
                   "content_type": "video/mp4", "size": size, "job": job_id,
                   "name": f"{job['template_name']}.mp4"}
        done = await self.service.move(
            job_id, Status.COMPLETED, lease=self.id, reason="stored and charged",
            fields={"result_key": key, "result_size": size}, library=library,
        )
        crashpoint("after_charge")
        if done is None:
            current = await jobs_db.get(self.db, job_id)
            if current and current["status"] == Status.CANCELED:
                await self.storage.delete(key)  # canceled at the last moment: nothing kept

    # -- helpers ---------------------------------------------------------------------

    async def _fail(self, job: dict[str, Any], message: str) -> None:
        await self.service.move(_id(job), Status.FAILED, reason=message,
                                fields={"error": message[:500]})

    async def _cancel_at_provider(self, job: dict[str, Any]) -> None:
        if not job.get("provider_request_id"):
            return
        try:
            await _retry(self.provider.cancel, job["endpoint"], job["provider_request_id"])
        except ProviderError as exc:
            log.warning("job %s: cancel at provider failed: %s", _id(job), exc)

    def cancel_later(self, job: dict[str, Any]) -> None:
        """For cancels made outside the driver (the API): tell the provider in the background."""
        self._spawn(self._cancel_at_provider(job))

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _image_url(self, job: dict[str, Any]) -> str:
        external = self.storage.external_url(job["start_key"])
        if external:
            return external
        import base64
        import mimetypes

        data = await self.storage.get_bytes(job["start_key"])
        mime = mimetypes.guess_type(job["start_key"])[0] or "image/png"
        return f"data:{mime};base64,{base64.b64encode(data).decode()}"


async def _retry(fn, *args):
    """A few quick in-step retries of transient errors; beyond them the step is rescheduled."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(TRANSIENT),
        wait=wait_exponential_jitter(initial=0.2, max=2.0),
        stop=stop_after_attempt(3),
        reraise=True,
    ):
        with attempt:
            return await fn(*args)
    raise AssertionError("unreachable")


def _id(job: dict[str, Any]) -> str:
    return str(job["id"].id)


def _in(seconds: float) -> datetime:
    from datetime import timedelta

    return datetime.now(UTC) + timedelta(seconds=seconds)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
