"""In-process fan-out of rendered events to each person's open streams.

One bounded buffer per stream. A stream whose buffer is full is cut off rather than allowed
to grow or to hold up the others: its browser reconnects and gets a fresh snapshot, so
nothing is lost but a little bandwidth.

An idle stream costs as little as we can make it, because one process holds thousands: a
subscription is a small slotted object with a list (no asyncio.Queue, whose deques and
Event cost about 3 KiB each), and keep-alive pings come from one task for the whole broker
that walks the streams a slice at a time, instead of a timer or task per stream. The same
walk finds streams that are stuck (a client that stopped reading, so a write never
completes): one that has taken nothing from its buffer for a whole ping interval while
something waited in it is cut off too, so no per-write timer is needed either.

One person may hold at most `per_person` streams: opening one more ends their oldest. Its
page's EventSource reconnects after a few seconds, so a person with more tabs than the cap
sees them take turns, and a client opening streams in a loop never holds more than the cap.
The cap is per process: the streams are this process's sockets, so this is where they can
be counted and closed. Across N processes behind a load balancer a person can hold
N × per_person; a global cap would need a record per stream in the database and a way to
close another process's stream (the change feed), which these numbers do not justify.

Open streams are long-lived objects (about 90 GC-tracked ones each, most of them uvicorn's
and Litestar's request chain), and at 10,000 streams a full garbage collection walks close
to a million of them: a 0.8-1.6 s pause of the event loop, during which no event goes out.
With `freeze_gc` on (the app turns it on), the broker moves the objects of newly opened
streams out of the collector's generations (`gc.freeze()`) a second after they opened, so
full collections only walk what is young. A frozen object that becomes garbage is still
freed by its reference count; only reference cycles wait, so once as many streams have
closed as were frozen, everything is thawed (`gc.unfreeze()`) and the next full collection
takes those cycles, and the live streams are frozen again. See docs/BENCHMARKS.md §2."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("reelforge.events")

QUEUE_SIZE = 64  # events a stream may fall behind before it is cut off
PER_PERSON = 10  # open streams one person may hold in this process
# Each open stream gets a keep-alive comment this often: under the 55-60 s idle timeouts of
# common proxies and load balancers (nginx, AWS ALB, Heroku), and each ping costs CPU.
PING_SECONDS = 30.0
# The pinger wakes PING_SLICES times per PING_SECONDS (every 0.1 s), so that at 10,000
# streams each wake writes ~33 pings, not a 333-write burst that delays real events.
PING_SLICES = 300
# New streams are frozen this long after the first of them opened (s): one freeze per
# burst of openings, and never more than a second's worth of streams left to the collector.
FREEZE_AFTER = 1.0


@dataclass(slots=True)
class ServerEvent:
    event: str  # the id of the fragment it replaces, e.g. "job-<id>", or "toast"
    data: str  # HTML
    wire: bytes | None = field(default=None, compare=False, repr=False)  # encoded once


PING = ServerEvent("", "")  # a keep-alive marker; the stream writes it as a comment


class Subscription:
    """One open stream's buffer. `get()` waits for the next event; None means the stream
    is over (client gone, too slow, or the server is shutting down). `on_cut`, when set,
    is called if the broker cuts the stream off, so the stream can abort a stuck write."""

    __slots__ = ("user_id", "session", "slot", "_items", "_waiter", "ended", "overflowed",
                 "took", "on_cut")

    def __init__(self, user_id: str, slot: int = 0, session: str | None = None):
        self.user_id = user_id
        self.session = session  # the sign-in session's key: signing out ends the stream
        self.slot = slot
        self._items: list[ServerEvent] = []
        self._waiter: asyncio.Future | None = None
        self.ended = False
        self.overflowed = False  # cut off: too far behind, or stuck
        self.took = False  # took something since the pinger last looked
        self.on_cut: Callable[[], None] | None = None

    @property
    def pending(self) -> int:
        return len(self._items)

    def put(self, events: list[ServerEvent], limit: int = QUEUE_SIZE) -> bool:
        """Queue all of `events` or none; False when they do not fit."""
        if self.ended:
            return True
        if len(self._items) + len(events) > limit:
            return False
        self._items.extend(events)
        self._wake()
        return True

    async def get(self) -> ServerEvent | None:
        """The next event, or None once the stream has ended."""
        while not self._items:
            if self.ended:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self.took = True
        return self._items.pop(0)

    def get_nowait(self) -> list[ServerEvent]:
        """Everything already queued (so a stream can write it in one go)."""
        items, self._items = self._items, []
        if items:
            self.took = True
        return items

    def end(self) -> None:
        """Drop what is queued and make `get()` return None."""
        self._items.clear()
        self.ended = True
        self._wake()

    def cut(self) -> None:
        """End the stream because it cannot keep up; tell it, so a stuck write is aborted."""
        self.overflowed = True
        self.end()
        if self.on_cut is not None:
            self.on_cut()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Broker:
    def __init__(self, queue_size: int = QUEUE_SIZE, ping_seconds: float = PING_SECONDS,
                 per_person: int = PER_PERSON):
        self.queue_size = queue_size
        self.ping_seconds = ping_seconds
        self.per_person = per_person
        # A dict per person, used as an ordered set: the first key is their oldest stream.
        self._subs: dict[str, dict[Subscription, None]] = {}
        self._slots: list[set[Subscription]] = [set() for _ in range(PING_SLICES)]
        self._next_slot = 0
        self._helpers: dict[str, asyncio.Task] = {}
        self.closed = False
        self.published = 0
        self.cut_off = 0
        self.pings = 0
        self.freeze_gc = False  # see the module docstring; the app's lifespan turns it on
        self.freezes = 0
        self._unfrozen = 0  # streams opened since the last freeze
        self._frozen = 0  # streams open at the last freeze (since the last thaw)
        self._closed = 0  # streams closed since the last thaw
        self._thawed = False  # the next freeze collects every generation first

    # -- subscribers ---------------------------------------------------------------------
    def subscribe(self, user_id: str, session: str | None = None) -> Subscription:
        sub = Subscription(user_id, self._next_slot, session)
        if self.closed:
            sub.end()
            return sub
        self._next_slot = (self._next_slot + 1) % PING_SLICES
        mine = self._subs.setdefault(user_id, {})
        mine[sub] = None
        self._slots[sub.slot].add(sub)
        while len(mine) > self.per_person:
            oldest = next(iter(mine))
            log.info("event stream of %s closed: over %d open streams",
                     user_id, self.per_person)
            self.unsubscribe(oldest)
            oldest.end()
        if self.ping_seconds:
            self.run_beside("pinger", self._ping_loop)
        if self.freeze_gc:
            self._unfrozen += 1
            self.run_beside("gc-freeze", self._freeze_soon)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        slot = self._slots[sub.slot]
        if sub in slot:  # the first call for this stream (it is called from several places)
            slot.discard(sub)
            self._closed += 1
            if self._frozen and self._closed >= self._frozen:
                self._thaw()
        subs = self._subs.get(sub.user_id)
        if subs is not None:
            subs.pop(sub, None)
            if not subs:
                del self._subs[sub.user_id]

    def has_subscribers(self, user_id: str) -> bool:
        return bool(self._subs.get(user_id))

    def user_ids(self) -> list[str]:
        return list(self._subs)

    def end_session(self, session: str) -> int:
        """End the streams opened under a sign-in session that has just ended."""
        ended = 0
        for subs in list(self._subs.values()):
            for sub in list(subs):
                if sub.session == session:
                    self.unsubscribe(sub)
                    sub.end()
                    ended += 1
        return ended

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subs.values())

    # -- fan-out -------------------------------------------------------------------------
    def publish(self, user_id: str, events: list[ServerEvent]) -> int:
        """Queue events for every open stream of the person; returns how many got them.
        A stream that cannot take them (too far behind) is cut off."""
        delivered = 0
        for sub in list(self._subs.get(user_id, ())):
            if sub.ended:  # its client is gone; the stream has yet to unsubscribe
                self.unsubscribe(sub)
            elif sub.put(events, self.queue_size):
                delivered += 1
            else:
                self._cut(sub, f"{sub.pending} events behind")
        self.published += len(events) * delivered
        return delivered

    def _cut(self, sub: Subscription, why: str) -> None:
        log.warning("event stream of %s cut off: %s", sub.user_id, why)
        self.cut_off += 1
        self.unsubscribe(sub)
        sub.cut()

    def ping_slice(self, index: int) -> int:
        """Visit one slice of the streams: queue a keep-alive for those with nothing
        queued, and cut off those that took nothing since the last visit although
        something was waiting (their client stopped reading)."""
        pinged = 0
        for sub in list(self._slots[index % PING_SLICES]):
            if sub.ended:
                continue
            if sub.pending and not sub.took:
                self._cut(sub, f"took nothing for {self.ping_seconds:g} s")
                continue
            sub.took = False
            if not sub.pending:
                sub.put([PING], self.queue_size)
                pinged += 1
        self.pings += pinged
        return pinged

    async def _ping_loop(self) -> None:
        # The slice due is worked out from the clock, not by counting wakes: a tick is short
        # (0.1 s) and a busy loop wakes late, which would stretch every stream's interval.
        # A late wake visits the slices it missed, each at most once.
        loop = asyncio.get_running_loop()
        tick = self.ping_seconds / PING_SLICES
        start, visited = loop.time(), 0
        while self._subs:
            await asyncio.sleep(tick)
            due = int((loop.time() - start) / tick)
            visited = max(visited, due - PING_SLICES + 1)
            while visited < due:
                visited += 1
                self.ping_slice(visited)

    # -- the garbage collector (see the module docstring) ---------------------------------
    async def _freeze_soon(self) -> None:
        await asyncio.sleep(FREEZE_AFTER)
        self.freeze()

    def freeze(self) -> None:
        """Move every object tracked now (the open streams' among them) to the permanent
        generation. The young generations are collected first (all of them after a thaw),
        so fresh garbage is not frozen with the streams."""
        if not self._unfrozen or self.closed:
            return
        gc.collect(2 if self._thawed else 1)
        gc.freeze()
        self.freezes += 1
        self._thawed = False
        self._unfrozen = 0
        if not self._frozen:
            self._closed = 0
        self._frozen = max(self._frozen, self.subscriber_count)

    def _thaw(self) -> None:
        """As many streams have closed as were frozen: give everything back to the
        collector (their reference cycles are in it), then, after one full collection,
        freeze the streams still open again. That full pass is the one pause this costs,
        once per turnover of the frozen streams."""
        gc.unfreeze()
        self._frozen = self._closed = 0
        self._thawed = True
        self._unfrozen = self.subscriber_count
        if self._unfrozen:
            self.run_beside("gc-freeze", self._freeze_soon)

    # -- helpers and shutdown ------------------------------------------------------------
    def run_beside(self, name: str, factory: Any) -> None:
        """Run `factory()` (a coroutine function) as a helper task of the broker, once at
        a time; it is canceled by `close_all()`. Needs a running loop; without one (plain
        synchronous use) nothing is started."""
        task = self._helpers.get(name)
        if (task is not None and not task.done()) or self.closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        coro: Coroutine = factory()
        self._helpers[name] = loop.create_task(coro, name=f"broker-{name}")

    def close_all(self) -> None:
        """On shutdown: end every stream promptly and refuse new ones."""
        self.closed = True
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.end()
        self._subs.clear()
        for slot in self._slots:
            slot.clear()
        current = _current_task()
        for task in self._helpers.values():
            if task is not current:
                task.cancel()
        self._helpers.clear()


def _current_task() -> asyncio.Task | None:
    with contextlib.suppress(RuntimeError):
        return asyncio.current_task()
    return None
