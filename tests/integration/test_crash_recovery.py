"""Kill the server abruptly at every driver step, restart it on the same embedded
database, and check that the job ends with one file, one library item and one charge."""

from __future__ import annotations

import time

import pytest

from app.jobs.crashpoints import POINTS, RENDER_POINTS
from tests.crashkit import Browserless, ServerProcess, read_books
from tests.fakes.fal_server import JobSpec
from tests.helpers import png_bytes


def assert_one_video_charged_once(data_dir) -> None:
    books = read_books(data_dir, "crash@example.com")
    assert books.charges == 1 and books.video_items == 1
    assert books.balance == 1000 - 80 == books.ledger_sum
    assert books.reserved == 0 and books.active_jobs == 0
    assert len(list((data_dir / "media").rglob("videos/*.mp4"))) == 1


@pytest.fixture
def fake(fake_fal):
    fake_fal.reset()
    fake_fal.defaults = JobSpec(queue_time=0.3, run_time=0.8)
    return fake_fal


@pytest.mark.parametrize("point", POINTS)
def test_crash_at_each_step_then_restart(point, fake, tmp_path):
    server = ServerProcess(tmp_path, {**fake.env(), "STATUS_INTERVAL": "0.2",
                                      "VIDEO_PROVIDER": "fal"})
    try:
        server.start(crash_at=point)
        person = Browserless(server.url)
        person.signup("crash@example.com")
        job_id = person.submit(person.upload(png_bytes()))
        assert server.wait_exit(timeout=30) == 137  # died at the crash point

        server.start()
        final = person.wait_final(job_id, timeout=60)
        assert final["status"] == "completed", final
        video = person.http.get(final["url"])
        assert video.status_code == 200 and video.content == fake.default_video
        assert server.stop() in (0, -15)  # uvicorn re-raises SIGTERM after a clean stop
    finally:
        server.kill()

    assert_one_video_charged_once(tmp_path)
    submissions = sum(c["submit"] for c in fake.counts_by_job().values())
    # A crash between fal accepting the job and us recording its id is the one place a
    # second submission can happen; it is never charged twice.
    assert submissions == (2 if point == "after_submit" else 1)


@pytest.mark.parametrize("point", RENDER_POINTS)
def test_a_local_render_cut_off_by_a_crash_is_rendered_again(point, tmp_path):
    """The local renderer runs in the server's process: killed mid-render, the restarted
    server renders the job again (same request id) and completes it once."""
    server = ServerProcess(tmp_path, {"VIDEO_PROVIDER": "local", "LEASE_SECONDS": "2"})
    try:
        server.start(crash_at=point)
        person = Browserless(server.url)
        person.signup("crash@example.com")
        job_id = person.submit(person.upload(png_bytes()))
        assert server.wait_exit(timeout=30) == 137  # died while rendering

        server.start()
        final = person.wait_final(job_id, timeout=60)
        assert final["status"] == "completed", final
        assert server.stop() in (0, -15)
    finally:
        server.kill()
    assert_one_video_charged_once(tmp_path)


def test_a_kill_9_in_the_middle_of_a_batch_ends_every_row_once(fake, tmp_path):
    """A 6-row batch, two rows running at a time (MAX_ACTIVE_JOBS=2): SIGKILL once some
    rows are done and others are running or waiting; after a restart every row completes
    once, each charged once and filed once."""
    server = ServerProcess(tmp_path, {**fake.env(), "STATUS_INTERVAL": "0.2",
                                      "VIDEO_PROVIDER": "fal", "MAX_ACTIVE_JOBS": "2",
                                      "LEASE_SECONDS": "2"})
    try:
        server.start()
        person = Browserless(server.url)
        person.signup("crash@example.com")
        key = person.upload(png_bytes())
        r = person.post("/api/batches", json={
            "templateSlug": "car-commercial", "startKey": key,
            "rows": [{"variables": {"BRAND": "Aurora", "MODEL": f"S{i}"}} for i in range(6)]})
        assert r.status_code == 202, r.text
        batch_id, job_ids = r.json()["batchId"], r.json()["jobIds"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            shown = person.http.get(f"/api/batches/{batch_id}").json()
            if shown["completed"] >= 1 and shown["waiting"] >= 1:
                break
            time.sleep(0.05)
        assert shown["completed"] >= 1 and shown["waiting"] >= 1, shown
        server.proc.kill()  # SIGKILL: no shutdown of any kind
        assert server.proc.wait(timeout=10) == -9

        server.start()
        finals = [person.wait_final(j, timeout=60)["status"] for j in job_ids]
        assert finals == ["completed"] * 6, finals
        shown = person.http.get(f"/api/batches/{batch_id}").json()
        assert (shown["status"], shown["charged"]) == ("completed", 6 * 80)
        assert server.stop() in (0, -15)
    finally:
        server.kill()
    books = read_books(tmp_path, "crash@example.com")
    assert books.charges == 6 and books.video_items == 6
    assert books.balance == 1000 - 6 * 80 == books.ledger_sum
    assert books.reserved == 0 and books.active_jobs == 0
    assert len(list((tmp_path / "media").rglob("videos/*.mp4"))) == 6
