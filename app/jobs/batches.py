"""Batches: one template, many rows of variables (each with its own start image or the
batch's), submitted at once. Every row is a normal video job driven, charged and announced
like any other; this module validates all rows first, reserves the whole batch's credits
in one transaction (all or nothing), and cancels or retries a batch's rows."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgspec

from app.db import batches as batches_db
from app.db.connection import Thrown
from app.db.records import Batch, NewJob, VideoJob
from app.jobs.service import JobRequestError, JobService, retry_job_id
from app.jobs.states import ACTIVE, Status

NAME_MAX = 100


def _bad(field: str, message: str, row: int | None = None) -> JobRequestError:
    body: dict[str, Any] = {"error": "invalid", "field": field, "message": message}
    if row is not None:
        body["row"] = row  # 1-based, as a spreadsheet numbers it
    return JobRequestError(400, body)


def batch_status(counts: Counter[str]) -> str:
    """pending (nothing started), processing, or once every row has ended: completed (all
    done), failed or canceled (none done), partial (some done, some not)."""
    total = sum(counts.values())
    active = sum(n for s, n in counts.items() if Status(s) in ACTIVE)
    if active:
        return "pending" if counts.get(Status.PENDING.value, 0) == total else "processing"
    done = counts.get(Status.COMPLETED.value, 0)
    if done == total:
        return "completed"
    if done:
        return "partial"
    return "failed" if counts.get(Status.FAILED.value) else "canceled"


def summary(batch: Batch, jobs: dict[str, VideoJob]) -> dict[str, Any]:
    """A batch's state from its jobs (in row order)."""
    rows = [jobs[j] for j in batch.jobs if j in jobs]
    counts = Counter(j.status.value for j in rows)
    return {
        "rows": rows, "counts": counts, "status": batch_status(counts), "total": len(rows),
        "completed": counts.get("completed", 0), "failed": counts.get("failed", 0),
        "canceled": counts.get("canceled", 0),
        "running": sum(n for s, n in counts.items() if s != "pending" and Status(s) in ACTIVE),
        "waiting": counts.get("pending", 0),
        "credits": sum(j.credits for j in rows),
        "charged": sum(j.credits for j in rows if j.status == Status.COMPLETED),
    }


def file_names(rows: list[VideoJob]) -> list[str]:
    """A file name per row for the zip: its number and its variables' values
    ("03-red-ferrari-sunset.mp4"), unique and safe on every system."""
    width = max(2, len(str(len(rows))))
    names = []
    for job in rows:
        values = [str(v) for v in job.variables.values() if v]
        slug = re.sub(r"[^\w]+", "-", " ".join(values).lower(), flags=re.ASCII).strip("-")
        names.append(f"{(job.row or 0) + 1:0{width}d}"
                     f"{'-' + slug[:60].rstrip('-') if slug else ''}.mp4")
    return names


@dataclass
class BatchService:
    jobs: JobService

    async def create(self, user_id: str, body: Any, provider: str
                     ) -> tuple[Batch, list[str], int]:
        """Validate every row, then record the batch and its jobs (credits reserved) in one
        transaction. Returns (batch, job ids in row order, credits reserved)."""
        settings = self.jobs.settings
        if not isinstance(body, dict):
            raise _bad("body", "The body must be a JSON object")
        template = await self.jobs.template(body.get("templateSlug"))
        rows = body.get("rows")
        if not isinstance(rows, list) or not rows:
            raise _bad("rows", "rows must be a list of at least one row")
        if len(rows) > settings.batch_max_rows:
            raise _bad("rows", f"A batch has at most {settings.batch_max_rows} rows; "
                       f"this one has {len(rows)}")
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > NAME_MAX):
            raise _bad("name", f"name must be text of at most {NAME_MAX} characters")
        name = (name or "").strip() or f"{template.name} · {len(rows)} variants"
        default_key = body.get("startKey")
        checked: set[str] = set()

        async def image(key: Any, field: str, row: int | None) -> str:
            if key in checked:
                return str(key)
            try:
                await self.jobs.start_image(user_id, key, field)
            except JobRequestError as exc:
                if row is not None:
                    exc.body["row"] = row
                    exc.body["message"] = f"Row {row}: {exc.body['message']}"
                raise
            checked.add(key)
            return str(key)

        if default_key is not None:  # the batch's own start image, checked even if no row uses it
            await image(default_key, "startKey", None)
        records: list[tuple[str, NewJob]] = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise _bad(f"rows[{i}]", f"Row {i + 1}: each row must be an object with "
                           "its variables", row=i + 1)
            try:
                record = self.jobs.record(template, "", row.get("variables"), provider,
                                          field_prefix=f"rows[{i}].", row=i)
            except JobRequestError as exc:
                exc.body.update(row=i + 1, message=f"Row {i + 1}: {exc.body['message']}")
                raise
            own = row.get("startKey")
            if own is not None:
                start_key = await image(own, f"rows[{i}].startKey", i + 1)
            elif default_key is None:
                raise _bad(f"rows[{i}].startKey", f"Row {i + 1} has no startKey and the "
                           "batch has none: choose a start image", row=i + 1)
            else:
                start_key = await image(default_key, "startKey", None)
            # Distinct instants keep the rows in order wherever jobs are sorted by time.
            step = timedelta(microseconds=i)
            record = msgspec.structs.replace(
                record, start_key=start_key, created_at=record.created_at + step,
                due_at=record.due_at + step)
            records.append((uuid.uuid4().hex, record))
        batch_id = uuid.uuid4().hex
        total = sum(r.credits for _, r in records)
        try:
            made = await batches_db.create(
                self.jobs.db, batch_id, user_id, name=name, template=template.slug,
                template_name=template.name,
                start_key=default_key or records[0][1].start_key,
                created_at=records[0][1].created_at, jobs=records)
        except Thrown as exc:
            raise await self.jobs.refusal(exc.code, user_id, total) from None
        await self._announce(batch_id, user_id)
        return made, [job_id for job_id, _ in records], total

    async def cancel(self, user_id: str, batch: Batch) -> None:
        """Cancel every row that can still be canceled, under the single-job rule (a row the
        provider has rendered completes and is charged)."""
        jobs = await batches_db.jobs_of(self.jobs.db, [batch])
        for job_id in batch.jobs:
            job = jobs.get(job_id)
            if job is None or job.status not in ACTIVE:
                continue
            try:
                await self.jobs.cancel(user_id, job_id, reason="batch canceled by its owner")
            except JobRequestError as exc:
                if exc.status != 409:  # already finished or rendered: left as it is
                    raise

    async def retry_failed(self, user_id: str, batch: Batch) -> tuple[list[str], int]:
        """One new job per failed row, once however many ask at once. Returns (the new jobs'
        ids, credits reserved); nothing to retry (or another call won) gives ([], 0)."""
        jobs = await batches_db.jobs_of(self.jobs.db, [batch])
        provider = self.jobs.settings.provider_name
        retries = []
        for job_id in batch.jobs:
            job = jobs.get(job_id)
            if job is None or job.status != Status.FAILED or job.retried_as:
                continue
            # The same inputs, price and row as the failed job, on today's provider.
            record = self.jobs.pending(
                template=job.template, template_name=job.template_name,
                start_key=job.start_key, variables=job.variables, prompt=job.prompt,
                provider=provider, endpoint=job.endpoint, parameters=job.parameters,
                typical_seconds=job.typical_seconds, credits=job.credits, row=job.row)
            retries.append((job_id, retry_job_id(job_id), record))
        if not retries:
            return [], 0
        total = sum(r.credits for _, _, r in retries)
        try:
            await batches_db.retry_rows(self.jobs.db, batch.id, user_id, retries)
        except Thrown as exc:
            if exc.code == "already_retried":  # a concurrent call retried them
                return [], 0
            raise await self.jobs.refusal(exc.code, user_id, total) from None
        new_ids = [new_id for _, new_id, _ in retries]
        await self._announce(batch.id, user_id)
        return new_ids, total

    async def _announce(self, batch_id: str, user_id: str) -> None:
        """A new batch (or new rows of one) goes out as its card, with the credits it
        holds, and the driver wakes."""
        await self.jobs.publish_batch(user_id, batch_id)
        self.jobs.wake_driver()
