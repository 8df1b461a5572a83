"""GET /events against the real app on a real socket (uvicorn in a thread), read with
httpx's streaming client: auth, headers, the snapshot on connect, the order of one job's
events, fan-out, isolation between people, clean-up, pings, and a prompt shutdown."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

from tests.fakes.live_server import SSE, LiveServer, live_account, open_events

pytestmark = pytest.mark.timeout(60)

JOB_ORDER = ["pending", "queued", "processing", "finalizing", "completed"]


def subscribers(server: LiveServer) -> int:
    return server.call(lambda: server.services.broker.subscriber_count)


def status_of(event: SSE) -> str | None:
    m = re.search(r'data-status="(\w+)"', event.data)
    return m.group(1) if m else None


def credits_shown(event: SSE) -> int:
    m = re.search(r'class="credits-amount">(\d+)<', event.data)
    assert m, event.data
    return int(m.group(1))


def held_shown(event: SSE) -> int:
    """What running jobs hold of the balance, as the badge says it (0: not shown)."""
    m = re.search(r'class="credits-held">· (\d+) held<', event.data)
    return int(m.group(1)) if m else 0


def is_credits(event: SSE) -> bool:
    return event.event == "credits"


async def wait_until(check, timeout: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_signed_out_gets_401(live_server):
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        r = await http.get("/events", headers={"accept": "text/event-stream"})
    assert r.status_code == 401
    assert r.json()["error"] == "not_signed_in"
    assert subscribers(live_server) == 0


async def test_headers_of_the_stream(live_server):
    async with live_account(live_server, "alice@example.com") as alice, \
            open_events(alice) as events:
        headers = events.response.headers
        assert events.response.status_code == 200
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["x-accel-buffering"] == "no"
        assert headers["cache-control"] == "no-store"
        await events.until(is_credits)


async def test_snapshot_on_connect_has_active_jobs_and_credits(live_server):
    live_server.run(live_server.services.driver.stop())  # so the job stays pending
    async with live_account(live_server, "alice@example.com") as alice:
        key = await alice.upload()
        r = await alice.submit(key)
        assert r.status_code == 202, r.text
        job_id = r.json()["jobId"]
        async with open_events(alice) as events:
            first = [await events.next() for _ in range(3)]
    assert [e.event for e in first] == ["jobs", "toast-progress", "credits"]
    card, toast, balance = first
    assert f'id="job-{job_id}"' in card.data and status_of(card) == "pending"
    assert 'id="toast-progress"' in toast.data and "Generating video" in toast.data
    # The price is held, not charged: the balance stands.
    assert credits_shown(balance) == 1000 and held_shown(balance) == 80


async def test_events_of_one_job_in_order_through_completed(live_server):
    async with live_account(live_server, "alice@example.com") as alice:
        key = await alice.upload()
        async with open_events(alice) as events:
            await events.until(is_credits)  # the snapshot
            start = len(events.seen)
            r = await alice.submit(key)
            assert r.status_code == 202, r.text
            job_id = r.json()["jobId"]
            done = await events.until(
                lambda e: e.event == f"job-{job_id}" and status_of(e) == "completed",
                timeout=40)
            await events.until(lambda e: e.event == "library", timeout=5)
        seen = events.seen[start:]
        names = [e.event for e in seen]
        # The new card and the notice about work in progress first, then the reserved
        # balance.
        assert names[:3] == ["jobs", "toast-progress", "credits"], names
        assert "Generating video" in seen[1].data
        assert status_of(seen[0]) == "pending" and f'id="job-{job_id}"' in seen[0].data
        assert credits_shown(seen[2]) == 1000 and held_shown(seen[2]) == 80
        # Every later change of the card replaces it by its id, never going back.
        cards = [status_of(e) for e in seen if e.event == f"job-{job_id}"]
        assert cards[0] == "queued" and cards[-1] == "completed", cards
        order = [JOB_ORDER.index(s) for s in cards]
        assert order == sorted(order), cards
        # Completion: the card, the notice (now hidden: nothing runs), the job's toast, the
        # charged balance, the video in the library.
        after = seen[seen.index(done):]
        assert [e.event for e in after] == [f"job-{job_id}", "toast-progress", "toasts",
                                            "credits", "library"], [e.event for e in after]
        assert " hidden " in after[1].data and "Generating" not in after[1].data
        assert "Video generated" in after[2].data and f'id="toast-{job_id}"' in after[2].data
        assert credits_shown(after[3]) == 920 and held_shown(after[3]) == 0
        assert "data-play=" in after[4].data and job_id in after[4].data  # a video tile
        # It finished while a page was open: nothing to announce on the next visit.
        async with open_events(alice) as again:
            await again.until(is_credits)
            with pytest.raises(TimeoutError):
                await again.next(timeout=0.5)


async def test_fan_out_to_two_streams_of_one_person(live_server):
    live_server.run(live_server.services.driver.stop())
    async with live_account(live_server, "alice@example.com") as alice:
        key = await alice.upload()
        async with open_events(alice) as one, open_events(alice) as two:
            await one.until(is_credits)
            await two.until(is_credits)
            assert subscribers(live_server) == 2
            job_id = (await alice.submit(key)).json()["jobId"]
            for stream in (one, two):
                card = await stream.until(lambda e: e.event == "jobs")
                assert f'id="job-{job_id}"' in card.data
                assert held_shown(await stream.until(is_credits)) == 80


async def test_no_events_of_another_person(live_server):
    live_server.run(live_server.services.driver.stop())
    async with live_account(live_server, "alice@example.com") as alice, \
            live_account(live_server, "bob@example.com") as bob:
        key = await alice.upload()
        async with open_events(alice) as mine, open_events(bob) as theirs:
            await mine.until(is_credits)
            await theirs.until(is_credits)
            before = list(theirs.seen)
            job_id = (await alice.submit(key)).json()["jobId"]
            await mine.until(lambda e: e.event == "jobs" and job_id in e.data)
            await mine.until(is_credits)
            with pytest.raises(TimeoutError):
                await theirs.next(timeout=1.0)
            assert theirs.seen == before
            assert not theirs.ended  # still open, just quiet


async def test_subscriptions_are_removed_when_the_client_goes(live_server):
    async with live_account(live_server, "alice@example.com") as alice:
        async with open_events(alice) as one, open_events(alice) as two:
            await one.until(is_credits)
            await two.until(is_credits)
            assert subscribers(live_server) == 2
        assert await wait_until(lambda: subscribers(live_server) == 0, timeout=1.0), \
            subscribers(live_server)
        uid = alice_id(live_server)
        assert not live_server.call(live_server.services.broker.has_subscribers, uid)


def alice_id(server: LiveServer) -> str:
    from app.db import users as users_db

    user = server.run(users_db.by_email(server.services.db, "alice@example.com"))
    return user.id


async def test_a_job_that_finished_while_away_is_announced_once(live_server):
    async with live_account(live_server, "alice@example.com") as alice:
        key = await alice.upload()
        job_id = (await alice.submit(key)).json()["jobId"]
        final = await alice.wait_status(job_id, timeout=40)
        assert final["status"] == "completed", final
        async with open_events(alice) as events:
            await events.until(is_credits)
            toast = await events.until(lambda e: e.event == "toasts", timeout=3)
            card = next(e for e in events.seen if e.event == "jobs")
        assert "Your video is ready" in toast.data and job_id in toast.data
        assert status_of(card) == "completed" and job_id in card.data
        async with open_events(alice) as again:
            await again.until(is_credits)
            with pytest.raises(TimeoutError):
                await again.next(timeout=1.0)
        assert not any("Your video is ready" in e.data for e in again.seen)


async def test_idle_streams_get_pings(live_server):
    broker = live_server.services.broker
    live_server.call(setattr, broker, "ping_seconds", 0.2)  # before the pinger starts
    async with live_account(live_server, "alice@example.com") as alice, \
            open_events(alice) as events:
        await events.until(is_credits)
        with pytest.raises(TimeoutError):
            await events.next(timeout=1.0)  # only comments come
        assert events.comments >= 3, events.comments


async def test_shutdown_with_open_streams_is_prompt(settings, live_server_factory):
    # uvicorn would wait up to 10 s for open streams: they must end at once instead.
    server = live_server_factory(settings, graceful_timeout=10)
    async with live_account(server, "alice@example.com") as alice, \
            live_account(server, "bob@example.com") as bob, \
            open_events(alice) as a1, open_events(alice) as a2, open_events(bob) as b1:
        for stream in (a1, a2, b1):
            await stream.until(is_credits)
        assert subscribers(server) == 3
        took = await asyncio.to_thread(server.stop)
        for stream in (a1, a2, b1):
            await stream.drain_to_end(timeout=2)
            assert stream.ended
    assert took < 3.0, f"shutdown took {took:.1f} s"
