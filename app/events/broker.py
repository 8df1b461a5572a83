"""In-process fan-out of rendered events to each person's open streams.

One bounded queue per stream. A stream whose queue is full is cut off rather than allowed
to grow or to hold up the others: its browser reconnects and gets a fresh snapshot, so
nothing is lost but a little bandwidth."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

QUEUE_SIZE = 64


@dataclass(slots=True, frozen=True)
class ServerEvent:
    event: str  # the id of the fragment it replaces, e.g. "job-<id>", or "toast"
    data: str  # HTML


@dataclass(slots=True, eq=False)
class Subscription:
    user_id: str
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False


class Broker:
    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self.published = 0

    def subscribe(self, user_id: str) -> Subscription:
        sub = Subscription(user_id)
        self._subs[user_id].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.user_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.user_id]

    def has_subscribers(self, user_id: str) -> bool:
        return bool(self._subs.get(user_id))

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def publish(self, user_id: str, events: list[ServerEvent]) -> int:
        """Queue events for every open stream of the person; returns how many got them."""
        delivered = 0
        for sub in list(self._subs.get(user_id, ())):
            if sub.overflowed:
                continue
            try:
                for ev in events:
                    sub.queue.put_nowait(ev)
                delivered += 1
            except asyncio.QueueFull:
                sub.overflowed = True
                self.unsubscribe(sub)
                _end(sub)
        self.published += len(events) * delivered
        return delivered

    def close_all(self) -> None:
        """On shutdown: end every stream promptly."""
        for subs in list(self._subs.values()):
            for sub in list(subs):
                _end(sub)
        self._subs.clear()


def _end(sub: Subscription) -> None:
    """Empty the queue and leave a None in it: the stream reads it and closes."""
    while not sub.queue.empty():
        sub.queue.get_nowait()
    sub.queue.put_nowait(None)
