"""What the admin pages show of a job, and the two fragments the stream pushes to admins:
a queue row (`admin-job-{id}`) and a job's live detail (`admin-job-{id}-detail`). Shared by
the admin pages (app/web/admin.py) and the notifier, so both render them the same way."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.db.records import JobEvent, VideoJob
from app.jobs.states import FINAL, Status
from app.web.render import Fragments, _job_view


def _seconds(since: Any, until: Any = None) -> int | None:
    if not isinstance(since, datetime):
        return None
    end = until if isinstance(until, datetime) else datetime.now(UTC)
    return max(0, int((end - since).total_seconds()))


def ago(seconds: int | None) -> str:
    """42 s, 5 min, 3 h, 2 d: an age at a glance."""
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def admin_job_view(job: VideoJob, owner_email: str | None) -> dict[str, Any]:
    lease_until = job.lease_until
    job_view = _job_view(job)
    return {
        **job_view,
        "owner_email": owner_email or "(deleted account)",
        "owner_id": job.owner_id,
        "provider": job.provider,
        "provider_request_id": job.provider_request_id,
        "attempts": job.attempts,
        "checks": job.checks,
        "age": ago(_seconds(job.created_at)),
        "run_time": ago(_seconds(job.created_at, job.finished_at)),
        "last_error": job.error,
        "lease_owner": job.lease_owner,
        "lease_until": lease_until,
        "lease_expired": lease_until is not None and lease_until < datetime.now(UTC),
        "due_at": job.due_at,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
        "webhook": job.webhook,
        "retried_as": job.retried_as,
        "retry_of": job.retry_of,
        "retryable": job.status in (Status.FAILED, Status.CANCELED) and not job.retried_as,
        "cancelable": job.status not in FINAL and not job_view["rendered"],
    }


def row_html(fragments: Fragments, job: VideoJob, owner_email: str | None) -> str:
    return fragments.render("admin_job_row", j=admin_job_view(job, owner_email))


def detail_html(
    fragments: Fragments, job: VideoJob, owner_email: str | None, timeline: list[JobEvent]
) -> str:
    return fragments.render("admin_job_detail", j=admin_job_view(job, owner_email),
                            timeline=timeline)
