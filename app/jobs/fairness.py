"""Which pending jobs the driver starts next: driver slots are shared fairly between people.

A person runs at most MAX_ACTIVE_JOBS jobs at once (a batch's rows wait as `pending`, their
credits held), and whoever has the fewest running goes first, so one person's 100-row batch
waits behind the single job of someone with nothing running. Within one person, single
submissions go before batch rows, then the longest waiting first."""

from __future__ import annotations

import heapq
from collections import defaultdict
from typing import Any


def pick(pending: list[dict[str, Any]], running: dict[str, int], cap: int,
         limit: int) -> list[dict[str, Any]]:
    """Up to `limit` of `pending` (rows with `owner` (its id), `due_at`, optional `batch`), in the
    order to start them; `running` is each owner's jobs already past pending."""
    queues: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in pending:
        queues[row["owner"]].append(row)
    heap = []
    for owner, rows in queues.items():
        rows.sort(key=lambda r: (r.get("batch") is not None, r["due_at"]), reverse=True)
        count = running.get(owner, 0)
        if count < cap:
            heap.append((count, rows[-1]["due_at"], owner))
    heapq.heapify(heap)
    chosen: list[dict[str, Any]] = []
    while heap and len(chosen) < limit:
        count, _, owner = heapq.heappop(heap)
        rows = queues[owner]
        chosen.append(rows.pop())
        if rows and count + 1 < cap:
            heapq.heappush(heap, (count + 1, rows[-1]["due_at"], owner))
    return chosen
