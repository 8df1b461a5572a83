"""Which jobs a request means: the status filters of the job lists (API and pages) and the
check on a job id taken from a URL."""

from __future__ import annotations

from app.jobs.states import FINAL, Status

STATUS_FILTERS = {
    "active": sorted(s.value for s in Status if s not in FINAL),
    "completed": ["completed"], "failed": ["failed"], "canceled": ["canceled"],
}


def safe_id(job_id: str) -> str:
    """Job ids are uuid hex; anything else simply matches no job."""
    return job_id if job_id.isalnum() and len(job_id) <= 64 else "invalid"
