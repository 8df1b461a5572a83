"""Creating, cancelling and advancing video jobs. Every status change goes through
`JobService.move`, which checks the transition table, makes the move atomically in the
database (with its credit effect) and then publishes the change."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.db import idempotency as idempotency_db
from app.db import jobs as jobs_db
from app.db import library as library_db
from app.db import templates as templates_db
from app.db import users as users_db
from app.db.connection import Database, Thrown
from app.db.records import NewJob, Template, VideoJob
from app.jobs.prompts import VariableError, check_variables, fill_prompt
from app.jobs.states import ACTIVE, FINAL, Status, sources_of
from app.observability.logging import get_logger
from app.settings import Settings

log = get_logger("reelforge.jobs")

ACTIVE_VALUES = sorted(s.value for s in ACTIVE)
FINAL_VALUES = sorted(s.value for s in FINAL)
RETRYABLE = (Status.FAILED, Status.CANCELED)
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_TTL = "24h"  # how long a key's answer is kept (and the key refused for another body)


class JobRequestError(Exception):
    """A submission or action refused; `status` is the HTTP status, `body` the JSON."""

    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(body.get("message") or body.get("error"))
        self.status = status
        self.body = body


class TransitionNotAllowed(RuntimeError):
    pass


class IdempotentReplay(Exception):
    """A submission whose Idempotency-Key already made a job: answer as the first time."""

    def __init__(self, status: int, body: dict[str, Any], job_id: str):
        super().__init__(job_id)
        self.status = status
        self.body = body
        self.job_id = job_id


class _AlreadyRetried(Exception):
    pass


def retry_job_id(job_id: str) -> str:
    """The one id a retry of `job_id` can have (a second CREATE of it would fail)."""
    return hashlib.sha256(f"retry-of-{job_id}".encode()).hexdigest()[:32]


def submission_fingerprint(template_slug: Any, start_key: Any, variables: Any) -> str:
    """What an Idempotency-Key is bound to: the submission as sent (JSON or form alike)."""
    canonical = json.dumps([template_slug, start_key, variables], sort_keys=True,
                           separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def accepted_body(job_id: str, credits: int) -> dict[str, Any]:
    """The 202 answer to a submission (stored as it is for Idempotency-Key replays)."""
    return {"jobId": job_id, "status": "pending", "credits": credits,
            "message": "Generating video…"}


async def _nothing(owner_id: str, batch_id: str) -> None:
    return None


@dataclass
class JobService:
    db: Database
    settings: Settings
    publish: Callable[[str, VideoJob], Awaitable[None]]  # (kind, job) → fan-out
    # (owner id, batch id): a new batch, or new rows of one (app/jobs/batches.py).
    publish_batch: Callable[[str, str], Awaitable[None]] = _nothing
    wake_driver: Callable[[], None] = lambda: None
    cancel_at_provider: Callable[[VideoJob], None] = lambda job: None
    # (job after, status before, credit effect) after every move: the app's metrics.
    observe: Callable[[VideoJob, str | None, str | None], None] = (
        lambda job, before, credits: None)

    async def create(
        self, user_id: str, template_slug: Any, start_key: Any, variables: Any, provider: str,
        *, idempotency_key: str | None = None, retry_of: str | None = None,
    ) -> VideoJob:
        """Record a job (credits reserved). With `idempotency_key`, a key this person used
        within 24 h raises IdempotentReplay (same body) or a 422 (another body), checked
        again in the transaction that records the job, so concurrent requests make one job.
        With `retry_of`, see `retry`."""
        fingerprint = None
        if idempotency_key is not None:
            fingerprint = submission_fingerprint(template_slug, start_key, variables)
            await self._replay(user_id, idempotency_key, fingerprint)
        template = await self.template(template_slug)
        if not isinstance(start_key, str) or not start_key:
            raise _bad("startKey", "startKey is required: choose an image from your library")
        record = self.record(template, start_key, variables, provider)
        await self.start_image(user_id, start_key)
        job_id = retry_job_id(retry_of) if retry_of else uuid.uuid4().hex
        idempotency = None
        if idempotency_key is not None:
            idempotency = {"key": idempotency_key, "fingerprint": fingerprint, "status": 202,
                           "body": accepted_body(job_id, record.credits),
                           "ttl": IDEMPOTENCY_TTL}
        try:
            job = await jobs_db.create(
                self.db, job_id, user_id, record, self.settings.max_active_jobs,
                retry_of=retry_of, idempotency=idempotency,
            )
        except Thrown as exc:
            if exc.code == "already_retried":
                raise _AlreadyRetried() from None
            if exc.code == "idempotency_key_used" and idempotency_key and fingerprint:
                await self._replay(user_id, idempotency_key, fingerprint)
            raise await self.refusal(exc.code, user_id, record.credits) from None
        await self.publish("job", job)
        await self.publish("credits", job)
        self.wake_driver()
        return job

    async def template(self, slug: Any) -> Template:
        """The active template named `slug`, or the submission's 400/404."""
        if not isinstance(slug, str) or not slug:
            raise _bad("templateSlug", "templateSlug is required")
        template = await templates_db.by_slug(self.db, slug)
        if template is None:
            raise JobRequestError(404, {"error": "not_found", "field": "templateSlug",
                                        "message": f"No template named {slug!r}"})
        return template

    async def start_image(self, user_id: str, start_key: Any, field: str = "startKey") -> None:
        """Refuse a start image that is not an image in this person's library."""
        if not isinstance(start_key, str) or not start_key:
            raise _bad(field, f"{field} is required: choose an image from your library")
        item = await library_db.get_owned(self.db, user_id, start_key)
        if item is None or item.kind != "image":
            raise JobRequestError(404, {"error": "not_found", "field": field,
                                        "message": "That start image is not in your library"})

    def record(self, template: Template, start_key: str, variables: Any, provider: str,
               *, field_prefix: str = "", row: int | None = None) -> NewJob:
        """A new pending job's record, after checking the variables (a bad one is a 400
        naming `field_prefix` + the field)."""
        try:
            values = check_variables(template, variables)
        except VariableError as exc:
            raise _bad(field_prefix + exc.field, exc.message) from None
        return self.pending(
            template=template.slug, template_name=template.name,
            start_key=start_key, variables=values,
            prompt=fill_prompt(template.prompt, values), provider=provider,
            endpoint=template.endpoint, parameters=template.parameters,
            typical_seconds=template.typical_seconds, credits=template.credits, row=row,
        )

    def pending(self, *, template: str, template_name: str, start_key: str,
                variables: dict[str, str], prompt: str, provider: str, endpoint: str,
                parameters: dict[str, Any], typical_seconds: int, credits: int,
                row: int | None = None) -> NewJob:
        """A new job's record from its inputs: pending, due now, with its deadline."""
        now = datetime.now(UTC)
        return NewJob(
            template=template, template_name=template_name, start_key=start_key,
            variables=variables, prompt=prompt, provider=provider, endpoint=endpoint,
            parameters=parameters, typical_seconds=typical_seconds, credits=credits,
            row=row, status=Status.PENDING,
            deadline_at=now + timedelta(seconds=self.settings.job_deadline_seconds),
            created_at=now, updated_at=now, due_at=now)

    async def _replay(self, user_id: str, key: str, fingerprint: str) -> None:
        """Raise the first answer to `key` (or 422 for another body); return if unused."""
        prior = await idempotency_db.get(self.db, user_id, key)
        if prior is None:
            return
        if prior["fingerprint"] != fingerprint:
            raise JobRequestError(422, {
                "error": "idempotency_key_reused", "field": IDEMPOTENCY_HEADER,
                "message": f"This {IDEMPOTENCY_HEADER} was already used with a different "
                           "request body; send a new key for a new submission"})
        raise IdempotentReplay(prior["status"], prior["body"], prior["job"])

    async def retry(self, job_id: str, provider: str) -> tuple[VideoJob, bool]:
        """A new job with a failed or canceled job's inputs, for the same person, reserved
        and charged like any other. One per job, however many ask at once (admin page,
        CLI): the original's `retried_as` is set in the transaction that records the new
        job. Returns (the retry job, whether this call made it)."""
        original = await jobs_db.get(self.db, job_id)
        if original is None:
            raise JobRequestError(404, {"error": "not_found", "message": "No such job"})
        for _ in range(2):
            if original.retried_as:
                existing = await jobs_db.get(self.db, original.retried_as)
                if existing is not None:
                    return existing, False
            if original.status not in RETRYABLE:
                raise JobRequestError(409, {
                    "error": "not_retryable", "status": original.status.value,
                    "message": "Only a failed or canceled job can be retried."})
            try:
                job = await self.create(
                    original.owner_id, original.template, original.start_key,
                    original.variables, provider, retry_of=job_id)
                return job, True
            except _AlreadyRetried:  # someone else's retry won: answer with theirs
                original = await jobs_db.get(self.db, job_id) or original
        raise JobRequestError(409, {"error": "not_retryable",
                                    "message": "The job could not be retried."})

    async def refusal(self, code: str, user_id: str, price: int) -> JobRequestError:
        if code == "insufficient_credits":
            user = await users_db.by_id(self.db, user_id)
            return JobRequestError(402, {
                "error": "insufficient_credits", "required": price,
                "available": user.available if user else 0,
                "message": "Not enough credits for this template",
            })
        if code == "too_many_active_jobs":
            return JobRequestError(429, {
                "error": "too_many_active_jobs", "limit": self.settings.max_active_jobs,
                "message": f"You already have {self.settings.max_active_jobs} videos "
                           "generating; wait for one to finish",
            })
        return JobRequestError(400, {"error": code, "message": code})

    async def cancel(
        self, user_id: str, job_id: str, reason: str = "canceled by its owner"
    ) -> VideoJob:
        """Cancel now: the job ends canceled and its reservation is released at once; the
        driver tells the provider (a finalize that races this finds the job canceled)."""
        job = await jobs_db.get_owned(self.db, job_id, user_id)
        if job is None:
            raise JobRequestError(404, {"error": "not_found", "field": "jobId",
                                        "message": "No such job"})
        if job.status in FINAL:
            if job.status == Status.CANCELED:
                return job
            raise JobRequestError(409, {"error": "already_finished",
                                        "status": job.status.value,
                                        "message": f"The job has already {job.status}"})
        if is_rendered(job):
            raise JobRequestError(409, {
                "error": "already_rendered", "status": job.status.value,
                "message": "The video has already been rendered and is being saved, so it "
                           "can no longer be canceled; it will be charged."})
        # unrendered: the move itself refuses once the provider has finished, so a cancel
        # racing the driver (or a webhook) cannot release credits for a paid render.
        moved = await self.move(job_id, Status.CANCELED, reason=reason, unrendered=True,
                                fields={"cancel_requested": True, "error": "Canceled"})
        if moved is None:  # it finished in the meantime
            return await self.cancel(user_id, job_id, reason)
        if moved.provider_request_id:
            self.cancel_at_provider(moved)
        return moved

    async def move(
        self, job_id: str, to: Status, *, fields: dict[str, object] | None = None,
        reason: str | None = None, lease: str | None = None,
        library: dict[str, object] | None = None, unrendered: bool = False,
    ) -> VideoJob | None:
        """The one way a job changes status. Returns None when the job was no longer in a
        state the move starts from (someone else moved it first). With `unrendered`, only
        from a state in which the provider has not finished rendering (see is_rendered)."""
        sources = sources_of(to)
        if unrendered:
            sources = [s for s in sources if s != Status.FINALIZING]
        if not sources:
            raise TransitionNotAllowed(to)
        extra = dict(fields or {})
        credits: jobs_db.CreditEffect = None
        if to in FINAL:
            extra.update(finished_at=datetime.now(UTC), lease_owner=None, lease_until=None,
                         queue_position=None)
            credits = "capture" if to == Status.COMPLETED else "release"
        job, before = await jobs_db.transition(
            self.db, job_id, to.value, sources, extra, reason=reason, lease=lease,
            credits=credits, library=library, with_previous=True, unrendered=unrendered,
        )
        if job is not None:
            # The one log line and the metrics of every status change (ids, never the
            # owner's email or the prompt).
            age = (job.finished_at or datetime.now(UTC)) - job.created_at
            (log.warning if to == Status.FAILED else log.info)(
                "job.transition", job_id=job_id, owner_id=job.owner_id,
                template=job.template, provider=job.provider,
                provider_request_id=job.provider_request_id,
                **{"from": before, "to": job.status.value}, attempt=job.attempts,
                duration_s=round(age.total_seconds(), 3),
                reason=reason, credits=credits,
            )
            try:
                self.observe(job, before, credits)
            except Exception:  # metrics must never stop a job
                log.exception("metrics.observe_failed", job_id=job_id)
            await self.publish("job", job)
            if credits:
                await self.publish("credits", job)
            if library:
                await self.publish("library", job)
        return job


def is_rendered(job: VideoJob) -> bool:
    """The provider has finished (and been paid): the job is being saved, or a webhook said
    so. From then on a job can no longer be canceled."""
    return job.status not in FINAL and (job.status == Status.FINALIZING or job.provider_done)


def _bad(field: str, message: str) -> JobRequestError:
    return JobRequestError(400, {"error": "invalid", "field": field, "message": message})
