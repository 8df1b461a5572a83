"""What the pages show of batches: one batch card (partials/batch_card.html) with the
overall progress in one bar, expanding to its rows' job cards, which are fetched when the
card is opened (a 100-row batch's cards are not sent with every change of one row)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath
from litestar.response import Template

from app.db import batches as batches_db
from app.db.records import Batch, VideoJob
from app.jobs.batches import summary
from app.jobs.states import FINAL, Status
from app.web.auth import current_user, services_of

LABELS = {"pending": "Waiting", "processing": "Generating", "completed": "Ready",
          "partial": "Done, some failed", "failed": "Failed", "canceled": "Canceled"}


def batch_view(batch: Batch, jobs: dict[str, VideoJob]) -> dict[str, Any]:
    """What the batch card needs, computed in one place."""
    s = summary(batch, jobs)
    total = s["total"] or 1
    segments = [(cls, n, label) for cls, n, label in (
        ("done", s["completed"], "done"), ("failed", s["failed"] + s["canceled"], "failed"),
        ("running", s["running"], "running"), ("waiting", s["waiting"], "waiting")) if n]
    # The version the page keeps the newest of (static/app.js upsert): the batch record's
    # rev (bumped when rows are retried) first, then its rows' revs.
    rows: list[VideoJob] = s["rows"]
    rows_rev = sum(j.rev for j in rows)
    return {
        "id": batch.id, "name": batch.name,
        "template_name": batch.template_name, "status": s["status"],
        "label": LABELS[s["status"]], "final": s["status"] not in ("pending", "processing"),
        "total": s["total"], "completed": s["completed"], "failed": s["failed"],
        "canceled": s["canceled"], "running": s["running"], "waiting": s["waiting"],
        "credits": s["credits"], "charged": s["charged"],
        "held": sum(j.credits for j in rows if j.status not in FINAL),
        "retryable": any(j.status == Status.FAILED and not j.retried_as for j in rows),
        "segments": [(cls, round(n * 100 / total, 2), n, label) for cls, n, label in segments],
        "first_job": rows[0].id if rows else None,
        "created_at": batch.created_at,
        "updated": str(batch.rev * 1_000_000 + rows_rev),
    }


async def batch_views(request: Request[Any, Any, Any],
                      batches: list[Batch]) -> list[dict[str, Any]]:
    jobs = await batches_db.jobs_of(services_of(request).db, batches)
    return [batch_view(b, jobs) for b in batches]


@get("/fragments/batches/{batch_id:str}/rows", include_in_schema=False)
async def batch_rows(request: Request[Any, Any, Any],
                     batch_id: FromPath[str]) -> Template | Response[Any]:
    """The job cards of a batch's rows, in row order (the card's "Show the videos")."""
    user = await current_user(request)
    if user is None:
        return Response("", status_code=401)
    services = services_of(request)
    safe = batch_id if batch_id.isalnum() and len(batch_id) <= 64 else "invalid"
    batch = await batches_db.get_owned(services.db, safe, user.id)
    if batch is None:
        return Response("", status_code=404)
    rows: list[VideoJob] = summary(batch, await batches_db.jobs_of(services.db, [batch]))["rows"]
    await services.fragments.durations.prime(services.db, rows)
    urls = {j.id: await services.storage.url(j.result_key) for j in rows if j.result_key}
    return Template(template_name="partials/batch_rows.html",
                    context={"jobs": rows, "urls": urls})
