"""Job states and the one table of allowed transitions."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"  # recorded, credits reserved, not yet at the provider
    QUEUED = "queued"  # submitted; the provider's request id is recorded
    PROCESSING = "processing"  # the provider is rendering
    FINALIZING = "finalizing"  # downloading, storing, charging
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


FINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELED})
ACTIVE = frozenset(set(Status) - FINAL)

_ENDS = {Status.FAILED, Status.CANCELED}
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.QUEUED, *_ENDS}),
    Status.QUEUED: frozenset({Status.QUEUED, Status.PROCESSING, Status.FINALIZING, *_ENDS}),
    Status.PROCESSING: frozenset({Status.PROCESSING, Status.FINALIZING, *_ENDS}),
    Status.FINALIZING: frozenset({Status.COMPLETED, *_ENDS}),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELED: frozenset(),
}


def sources_of(target: Status) -> list[str]:
    """The states a job may be in to move to `target` (used in guarded UPDATE … WHERE)."""
    return sorted(s.value for s, targets in TRANSITIONS.items() if target in targets)


def public_status(status: str) -> str:
    """The API folds queued and finalizing into processing."""
    if status in (Status.QUEUED, Status.FINALIZING):
        return Status.PROCESSING.value
    return status
