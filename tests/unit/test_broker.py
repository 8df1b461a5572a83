"""The broker's fan-out, its bounds (a slow stream is cut off, the others go on), its
pinger, and a stream stuck in a write being aborted when it is cut off."""

from __future__ import annotations

import asyncio

import pytest

from app.events.broker import PING, PING_SLICES, Broker, ServerEvent, Subscription
from app.events.stream import EventStream, encode

pytestmark = pytest.mark.timeout(10)


def ev(name: str, data: str = "<div></div>") -> ServerEvent:
    return ServerEvent(name, data)


async def test_publish_reaches_every_stream_of_the_person_and_nobody_else():
    broker = Broker(ping_seconds=0)
    a1, a2, b = broker.subscribe("alice"), broker.subscribe("alice"), broker.subscribe("bob")
    assert broker.publish("alice", [ev("jobs"), ev("credits")]) == 2
    for sub in (a1, a2):
        assert [(await sub.get()).event, (await sub.get()).event] == ["jobs", "credits"]
    assert b.pending == 0
    assert broker.publish("carol", [ev("jobs")]) == 0
    assert broker.subscriber_count == 3 and broker.published == 4


async def test_a_stream_whose_client_just_left_does_not_count_as_delivered():
    # (A finished job counts as announced only if some open stream took its event.)
    broker = Broker(ping_seconds=0)
    sub = broker.subscribe("alice")
    sub.end()  # the client went; its stream has not unsubscribed yet
    assert broker.publish("alice", [ev("job-1")]) == 0
    assert not broker.has_subscribers("alice") and sub.pending == 0


async def test_get_waits_for_the_next_event_and_returns_none_once_ended():
    broker = Broker(ping_seconds=0)
    sub = broker.subscribe("alice")
    waiting = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    broker.publish("alice", [ev("jobs")])
    assert (await asyncio.wait_for(waiting, 1)).event == "jobs"
    waiting = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    sub.end()
    assert await asyncio.wait_for(waiting, 1) is None
    assert await sub.get() is None


async def test_a_stream_that_falls_behind_is_cut_off_without_holding_up_the_others():
    broker = Broker(queue_size=8, ping_seconds=0)
    slow, fast = broker.subscribe("alice"), broker.subscribe("alice")
    cut: list[str] = []
    slow.on_cut = lambda: cut.append("slow")
    received = 0
    for i in range(20):  # `slow` never reads; `fast` reads everything
        broker.publish("alice", [ev(f"job-{i}")])
        received += len(fast.get_nowait())
    assert received == 20
    assert slow.overflowed and slow.ended and cut == ["slow"]
    assert slow.pending == 0  # what it held is dropped, not kept
    assert await slow.get() is None
    assert broker.subscriber_count == 1 and broker.cut_off == 1
    assert broker.publish("alice", [ev("credits")]) == 1  # the others go on


async def test_the_pinger_visits_one_slice_at_a_time_and_cuts_off_stuck_streams():
    broker = Broker(ping_seconds=0, per_person=PING_SLICES * 2)
    subs = [broker.subscribe("alice") for _ in range(PING_SLICES * 2)]
    slot = subs[0].slot
    in_slot = [s for s in subs if s.slot == slot]
    assert len(in_slot) == 2  # subscriptions are spread over the slices
    reader, stuck = in_slot
    assert broker.ping_slice(slot) == 2
    assert (reader.pending, stuck.pending) == (1, 1)
    assert all(s.pending == 0 for s in subs if s.slot != slot)
    assert await reader.get() is PING  # the reader takes its ping; `stuck` does not
    assert broker.ping_slice(slot) == 1
    assert reader.pending == 1 and not reader.ended
    assert stuck.overflowed and stuck.ended and broker.cut_off == 1
    assert broker.subscriber_count == len(subs) - 1


async def test_a_reader_with_fresh_events_is_not_mistaken_for_a_stuck_one():
    broker = Broker(ping_seconds=0)
    sub = broker.subscribe("alice")
    broker.ping_slice(sub.slot)
    await sub.get()  # took the ping
    broker.publish("alice", [ev("jobs")])  # arrives just before the next visit
    broker.ping_slice(sub.slot)
    assert not sub.ended and sub.pending == 1


async def test_the_pinger_runs_while_there_are_streams():
    broker = Broker(ping_seconds=0.1)
    sub = broker.subscribe("alice")
    assert await asyncio.wait_for(sub.get(), 1) is PING
    assert await asyncio.wait_for(sub.get(), 1) is PING
    broker.unsubscribe(sub)
    pinger = broker._helpers["pinger"]
    await asyncio.wait_for(pinger, 1)  # it ends when the last stream goes
    broker.subscribe("bob")
    assert not broker._helpers["pinger"].done()  # and comes back with the next
    broker.close_all()


async def test_close_all_ends_every_stream_and_refuses_new_ones():
    broker = Broker(ping_seconds=0.1)
    subs = [broker.subscribe("alice"), broker.subscribe("bob")]
    helper_started = asyncio.Event()

    async def helper():
        helper_started.set()
        await asyncio.Event().wait()

    broker.run_beside("helper", helper)
    await helper_started.wait()
    helpers = list(broker._helpers.values())
    broker.close_all()
    assert [await s.get() for s in subs] == [None, None]
    assert broker.subscriber_count == 0
    late = broker.subscribe("alice")
    assert late.ended and await late.get() is None and broker.subscriber_count == 0
    await asyncio.wait(helpers, timeout=1)
    assert all(t.cancelled() for t in helpers)


def test_each_event_is_encoded_once_whoever_receives_it():
    event = ev("job-1", "<p>one</p>\n<p>two</p>")
    wire = encode(event)
    assert wire == b"event: job-1\r\ndata: <p>one</p>\r\ndata: <p>two</p>\r\n\r\n"
    assert encode(event) is wire
    assert encode(PING).startswith(b":")


# --- the stream's side of a cut-off -------------------------------------------------------
class _NoSnapshot:
    async def snapshot(self, user_id: str) -> list:
        return []


async def _run_stream(broker: Broker, sub: Subscription, block_after: int):
    """Runs an EventStream whose client takes `block_after` messages (the first is the
    response start), then stops reading: every later write blocks, as uvicorn's does once
    the socket's buffers are full."""
    writes: list[dict] = []
    blocked = asyncio.Event()

    async def send(message):
        writes.append(message)
        if message["type"] == "http.response.body" and len(writes) > block_after:
            blocked.set()
            await asyncio.Event().wait()

    async def receive():
        await asyncio.Event().wait()  # the client never disconnects

    scope = {"type": "http", "method": "GET"}
    task = asyncio.ensure_future(EventStream(sub, _NoSnapshot(), broker)(scope, receive, send))
    return task, writes, blocked


async def test_a_stream_stuck_in_a_write_ends_when_it_is_cut_off():
    broker = Broker(queue_size=4, ping_seconds=0)
    stuck, other = broker.subscribe("alice"), broker.subscribe("alice")
    task, writes, blocked = await _run_stream(broker, stuck, block_after=1)
    broker.publish("alice", [ev("jobs")])
    await asyncio.wait_for(blocked.wait(), 1)  # the stream is stuck writing "jobs"
    assert (await other.get()).event == "jobs"
    for i in range(5):
        broker.publish("alice", [ev(f"job-{i}")])
        assert (await other.get()).event == f"job-{i}"  # the other stream is not held up
    # The fifth event did not fit: cut off, the stuck write is cancelled, the stream ends.
    await asyncio.wait_for(task, 1)
    assert not task.cancelled() and task.exception() is None
    assert stuck.overflowed and broker.subscriber_count == 1
    assert writes[0]["type"] == "http.response.start"
    assert b"event: jobs" in writes[1]["body"]


async def test_a_stream_stuck_in_a_write_is_found_by_the_pinger():
    broker = Broker(ping_seconds=0)
    stuck = broker.subscribe("alice")
    task, _writes, blocked = await _run_stream(broker, stuck, block_after=1)
    broker.ping_slice(stuck.slot)
    await asyncio.wait_for(blocked.wait(), 1)  # stuck writing its ping
    broker.ping_slice(stuck.slot)  # a new ping waits...
    assert not task.done()
    broker.ping_slice(stuck.slot)  # ...and is still there a whole interval later
    await asyncio.wait_for(task, 1)
    assert stuck.overflowed and broker.subscriber_count == 0


async def test_a_stream_ends_cleanly_when_its_client_goes():
    broker = Broker(ping_seconds=0)
    sub = broker.subscribe("alice")
    gone = asyncio.Event()
    writes: list[dict] = []

    async def send(message):
        writes.append(message)

    async def receive():
        await gone.wait()
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "GET"}
    task = asyncio.ensure_future(EventStream(sub, _NoSnapshot(), broker)(scope, receive, send))
    broker.publish("alice", [ev("jobs")])
    await asyncio.sleep(0.05)
    gone.set()
    await asyncio.wait_for(task, 1)
    assert broker.subscriber_count == 0
    assert [m.get("more_body") for m in writes[1:]] == [True, False]
    await asyncio.sleep(0)
    listeners = [t for t in asyncio.all_tasks() if "_listen_for_disconnect" in repr(t)]
    assert listeners == []
