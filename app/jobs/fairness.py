"""Which pending jobs the driver starts next: driver slots are shared fairly between people.

A person runs at most MAX_ACTIVE_JOBS jobs at once (a batch's rows wait as `pending`, their
credits held), and whoever has the fewest running goes first, so one person's 100-row batch
waits behind the single job of someone with nothing running. Within one person, single
submissions go before batch rows, then the longest waiting first."""

from __future__ import annotations

import heapq
from collections import defaultdict
from datetime import datetime
from typing import Protocol, TypeVar


class Waiting(Protocol):
    """What `pick` reads of a pending job (app/db/records.py DueJob has it)."""

    @property
    def owner_id(self) -> str: ...
    @property
    def due_at(self) -> datetime: ...
    @property
    def batch(self) -> str | None: ...


W = TypeVar("W", bound=Waiting)


def pick(pending: list[W], running: dict[str, int], cap: int, limit: int) -> list[W]:
    """Up to `limit` of `pending`, in the order to start them; `running` is each owner's
    jobs already past pending."""
    queues: dict[str, list[W]] = defaultdict(list)
    for job in pending:
        queues[job.owner_id].append(job)
    heap: list[tuple[int, datetime, str]] = []
    for owner, jobs in queues.items():
        jobs.sort(key=lambda j: (j.batch is not None, j.due_at), reverse=True)
        count = running.get(owner, 0)
        if count < cap:
            heap.append((count, jobs[-1].due_at, owner))
    heapq.heapify(heap)
    chosen: list[W] = []
    while heap and len(chosen) < limit:
        count, _, owner = heapq.heappop(heap)
        jobs = queues[owner]
        chosen.append(jobs.pop())
        if jobs and count + 1 < cap:
            heapq.heappush(heap, (count + 1, jobs[-1].due_at, owner))
    return chosen
