"""Shutdown under load: SIGTERM reaches the real server (uvicorn in a subprocess on embedded
surrealkv, the fake fal server as provider) while event streams are open and jobs are in
every state, from pending (its submission to fal still in flight) through queued and
processing to finalizing (its video download held up by the fake), with one completed.

The process must exit within its grace period (uvicorn's 10 s for open connections, which
the event streams end at once, then the driver's 5 s for running steps), hand every lease
back, lose no job and charge none twice; the next start resumes every job to completion."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.db.connection import Database
from app.settings import Settings
from tests.crashkit import Browserless, EventStreamReader, ServerProcess, read_books
from tests.fakes.fal_server import JobSpec
from tests.helpers import png_bytes

GRACE = 10 + 5  # uvicorn's timeout_graceful_shutdown (app/cli.py) + the driver's stop grace
STREAMS = 24
LONG = 600.0  # seconds: "never", within this test
HELD = 12.0  # a held request outlasts the driver's 5 s grace, and ends before the test


@pytest.fixture
def fake(fake_fal):
    fake_fal.reset()
    fake_fal.defaults = JobSpec(queue_time=0.1, run_time=0.2)
    yield fake_fal
    fake_fal.reset()


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _message(person: Browserless, job_id: str) -> str:
    body = person.status(job_id)
    return f"{body['status']}: {body.get('message', body.get('error', ''))}"


def _jobs_at_rest(data_dir) -> list[dict]:
    async def read() -> list[dict]:
        db = Database(Settings(data_dir=data_dir, database_url=None))
        await db.connect()
        try:
            return await db.read_one(
                "SELECT meta::id(id) AS id, status, lease_owner, provider_request_id "
                "FROM video_job")
        finally:
            await db.close()

    return asyncio.run(read())


def test_sigterm_under_load_then_resume(tmp_path, fake):
    server = ServerProcess(tmp_path, {
        **fake.env(), "VIDEO_PROVIDER": "fal", "STATUS_INTERVAL": "0.2",
        "MAX_ACTIVE_JOBS": "10", "EVENT_STREAMS_PER_PERSON": str(STREAMS)})
    server.start()
    readers: list[EventStreamReader] = []
    try:
        person, other = Browserless(server.url), Browserless(server.url)
        person.signup("busy@example.com")
        other.signup("watcher@example.com")
        key = person.upload(png_bytes())
        for i in range(STREAMS):  # most on the busy person, some on another
            who = person if i % 4 else other
            readers.append(EventStreamReader(server.url, who.http.cookies, 120))
        for reader in readers:
            reader.start()
        for reader in readers:
            assert reader.opened.wait(10) and reader.status == 200

        jobs: dict[str, str] = {}
        done = person.submit(key)  # completed before the signal
        assert person.wait_final(done, 30)["status"] == "completed"
        jobs["completed"] = done

        def submit_when(kind: str, **spec) -> str:
            before = fake.count("submit")
            if spec:
                fake.next_jobs(1, **spec)
            job_id = person.submit(key)
            _wait(lambda: fake.count("submit") > before, 10, f"the {kind} job at fal")
            return job_id

        jobs["queued"] = submit_when("queued", queue_time=LONG)
        jobs["processing"] = submit_when("processing", queue_time=0, run_time=LONG)
        _wait(lambda: _message(person, jobs["queued"]).startswith("processing: In queue"),
              10, "queued")
        _wait(lambda: _message(person, jobs["processing"]).startswith("processing: ")
              and "queue" not in _message(person, jobs["processing"]), 10, "processing")
        # finalizing: fal is done, but the video download hangs (longer than the grace)
        fake.delay_next("video", HELD)
        videos = fake.count("video")
        jobs["finalizing"] = submit_when("finalizing", queue_time=0, run_time=0.1)
        _wait(lambda: fake.count("video") > videos, 15, "the held download")
        assert _message(person, jobs["finalizing"]) == "processing: Saving your video…"
        # pending: its submission to fal is in flight (held by the fake) …
        fake.delay_next("submit", HELD)
        jobs["pending (submitting)"] = submit_when("pending")
        # … and one recorded a moment before the signal
        fake.next_jobs(1, queue_time=LONG)
        jobs["pending (new)"] = person.submit(key)
        assert person.status(jobs["pending (submitting)"])["status"] == "pending"

        signalled = time.monotonic()
        code = server.stop(timeout=GRACE + 10)
        took = time.monotonic() - signalled
    finally:
        for reader in readers:
            reader.stop.set()
        server.kill()
    for reader in readers:
        reader.join(timeout=10)

    assert code in (0, -15), code  # uvicorn re-raises SIGTERM after a clean stop
    assert took < GRACE, f"exited {took:.1f} s after SIGTERM"
    print(f"exited {took:.1f} s after SIGTERM; streams ended within "
          f"{max(r.ended_at for r in readers) - signalled:.1f} s")
    # every stream was ended by the server, promptly, and had been live until then
    assert all(r.ended_by_server for r in readers)
    assert max(r.ended_at for r in readers) - signalled < 11
    assert all("event: credits" in r.text for r in readers)
    assert any(f"job-{jobs['finalizing']}" in r.text for r in readers)

    at_rest = {j["id"]: j for j in _jobs_at_rest(tmp_path)}
    assert set(at_rest) == set(jobs.values())
    states = {name: at_rest[job_id]["status"] for name, job_id in jobs.items()}
    assert states == {"completed": "completed", "queued": "queued",
                      "processing": "processing", "finalizing": "finalizing",
                      "pending (submitting)": "pending", "pending (new)": states["pending (new)"]}
    assert states["pending (new)"] in ("pending", "queued", "processing")
    assert all(j["lease_owner"] is None for j in at_rest.values()), at_rest  # handed back

    # The next start resumes them all. fal finishes the long ones now.
    fake.reset()
    fake.defaults = JobSpec(queue_time=0.1, run_time=0.2)
    for request_id in list(fake.jobs):
        fake.complete_now(request_id)
    server.start()
    try:
        finals = {name: person.wait_final(job_id, timeout=60) for name, job_id in jobs.items()}
        assert {n: f["status"] for n, f in finals.items()} == dict.fromkeys(jobs, "completed")
        for final in finals.values():
            r = person.http.get(final["url"])
            assert r.status_code == 200 and r.content == fake.default_video
        assert server.stop() in (0, -15)
    finally:
        server.kill()

    books = read_books(tmp_path, "busy@example.com")
    assert books.charges == books.video_items == len(jobs)  # once each
    assert books.balance == 1000 - 80 * len(jobs) == books.ledger_sum
    assert books.reserved == 0 and books.active_jobs == 0
    assert len(list((tmp_path / "media").rglob("videos/*.mp4"))) == len(jobs)
