"""When the driver looks at a job next. One place for every delay of the job engine."""

from __future__ import annotations

import random

STATUS_INTERVAL = 10.0  # longest gap between status checks without a webhook
WEBHOOK_SAFETY_FIRST = 30.0  # with a webhook: one early look (queue position) …
WEBHOOK_SAFETY_INTERVAL = 120.0  # … then only a slow safety check
# How long a driver's claim on a job lasts unless renewed (every third of it, while the
# step runs or a render runs in its process): a dead driver's jobs wait this long.
LEASE_SECONDS = 30.0


def next_check(checks: int, webhook: bool, interval: float = STATUS_INTERVAL) -> float:
    """Seconds until the next status check, given how many were made so far.

    Without a webhook, one check per `interval` (the provider's: 10 s for fal, where each
    check is a request; 1 s for the local renderer, where it is free), so a job of d seconds
    costs ceil(d / interval) checks, whoever watches it. With a webhook, fal tells us when it
    is done: one early check to show the queue position, then a slow safety check in case a
    webhook is lost."""
    if webhook:
        return WEBHOOK_SAFETY_FIRST if checks == 0 else WEBHOOK_SAFETY_INTERVAL
    return interval


def retry_after(attempts: int) -> float:
    """Backoff after a transient error (attempts counts them): 2 s doubling to 5 min, jittered."""
    base = min(300.0, 2.0 * 2.0 ** max(0, attempts - 1))
    return base * random.uniform(0.8, 1.2)


MAX_TRANSIENT_ATTEMPTS = 12
