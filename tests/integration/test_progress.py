"""Job progress: the provider's own percentage when its log reports one, otherwise the
median run time of recent completed jobs of the same template and provider (the template's
typical_seconds only until there is history), as the card, the toast and the status API
show it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.db import jobs as jobs_db
from app.db.connection import rid
from app.db.records import VideoJob
from app.jobs.progress import Durations, log_progress
from app.jobs.states import Status
from tests.helpers import Account
from tests.integration.api_support import image_bytes, in_app, user_id


@pytest.mark.parametrize(("line", "expected"), [
    ("Rendering 46%", 0.46),
    ("Rendering 0%", 0.0),
    ("Rendering 100%", 1.0),
    (" 45%|████▌     | 9/20 [00:05<00:06,  1.8it/s]", 0.45),  # fal's tqdm-style lines
    ("Progress: 12.5 %", 0.125),
    ("Queued for rendering", None),
    ("Loading model v1.5%", None),  # a version number, not progress
    ("350% zoom", None),
    ("", None),
    (None, None),
])
def test_log_progress_reads_a_percentage(line, expected):
    assert log_progress(line) == expected


@pytest.fixture
async def alice(idle) -> Account:
    return await Account.signup(idle, "alice@example.com")


def services(client):
    return client.app.state.services


async def _history(db, owner: str, runs: list[float], template: str = "car-commercial",
                   provider: str = "local", hours_ago: int = 0) -> None:
    """Completed jobs that took `runs` seconds each (created → finished), newest last."""
    now = datetime.now(UTC) - timedelta(hours=hours_ago)
    for i, seconds in enumerate(runs):
        finished = now - timedelta(minutes=len(runs) - i)
        await db.write("CREATE video_job CONTENT $job", {"job": {
            "owner": owner, "template": template, "template_name": "Car", "start_key": "k",
            "variables": {}, "prompt": "p", "provider": provider, "endpoint": "e",
            "parameters": {}, "status": "completed", "credits": 1,
            "deadline_at": finished, "created_at": finished - timedelta(seconds=seconds),
            "finished_at": finished, "due_at": finished + timedelta(days=1)}})


async def _processing(client, account: Account, last_log: str | None, ran: float) -> str:
    """A submitted job moved to `processing` `ran` seconds ago (the driver is stopped)."""
    key = await account.upload(image_bytes())
    r = await account.submit(key)
    assert r.status_code == 202, r.text
    job_id = r.json()["jobId"]
    started = datetime.now(UTC) - timedelta(seconds=ran)
    fields = {"status": "processing", "last_log": last_log, "started_at": started,
              "created_at": started, "due_at": datetime.now(UTC) + timedelta(days=1)}
    in_app(client, services(client).db.write,
           "UPDATE type::thing('video_job', $id) MERGE $f", {"id": job_id, "f": fields})
    return job_id


async def _status(account: Account, job_id: str) -> dict:
    r = await account.get("/api/templates/video/status", params={"jobId": job_id})
    assert r.status_code == 200, r.text
    return r.json()


def _owner(client, account: Account):
    return rid("user", user_id(client, account.email))


async def test_the_median_of_the_last_50_completed_runs(idle, alice):
    db = services(idle).db
    # 10 old slow runs, then 50 recent ones of 20–69 s: only the recent 50 count.
    in_app(idle, _history, db, _owner(idle, alice), [900.0] * 10 + [20.0 + i for i in range(50)],
           "car-commercial", "local", 2)
    in_app(idle, _history, db, _owner(idle, alice), [5.0] * 5, "car-commercial", "fal", 2)
    runs = in_app(idle, jobs_db.recent_durations, db, "car-commercial", "local")
    assert len(runs) == 50 and max(runs) == 69.0
    now = [0.0]
    durations = Durations(clock=lambda: now[0])
    now_at = datetime.now(UTC)
    job = VideoJob(id="j", owner_id="u", template="car-commercial", template_name="Car",
                   start_key="k", prompt="p", provider="local", endpoint="e",
                   status=Status.PROCESSING, credits=1, due_at=now_at, deadline_at=now_at,
                   created_at=now_at, updated_at=now_at)
    in_app(idle, durations.prime, db, [job])
    assert durations.seconds("car-commercial", "local") == 44.5
    # Cached: new history is not read again within the minute, but is after it.
    in_app(idle, _history, db, _owner(idle, alice), [1.0] * 50)
    in_app(idle, durations.prime, db, [job])
    assert durations.seconds("car-commercial", "local") == 44.5
    now[0] = 61.0
    in_app(idle, durations.prime, db, [job])
    assert durations.seconds("car-commercial", "local") == 1.0
    assert durations.seconds("product-turntable", "local") is None


async def test_without_history_the_template_figure_is_said_as_usual(idle, alice):
    job_id = await _processing(idle, alice, "Preparing the start image", ran=30)
    body = await _status(alice, job_id)
    assert body["status"] == "processing"
    assert "progress" not in body and "etaSeconds" not in body, body
    page = (await alice.get("/jobs")).text
    assert "usually about 2 min" in page and " left" not in page


async def test_with_history_the_estimate_counts_down(idle, alice):
    in_app(idle, _history, services(idle).db, _owner(idle, alice), [40.0, 60.0, 80.0])
    job_id = await _processing(idle, alice, "Preparing the start image", ran=15)
    body = await _status(alice, job_id)
    # Median 60 s, 15 s gone: a quarter done, 45 s left.
    assert body["progress"] == pytest.approx(0.25, abs=0.02)
    assert body["etaSeconds"] == pytest.approx(45, abs=2)
    page = (await alice.get("/jobs")).text
    assert "about 45 s left" in page and "usually about" not in page
    assert 'aria-valuenow="25"' in page


async def test_real_progress_wins_over_any_estimate(idle, alice):
    in_app(idle, _history, services(idle).db, _owner(idle, alice), [600.0])
    job_id = await _processing(idle, alice, "Rendering 46%", ran=23)
    body = await _status(alice, job_id)
    assert body["progress"] == 0.46
    # 23 s for 46 %: about 27 s for the rest (not the 577 s history would say).
    assert body["etaSeconds"] == pytest.approx(27, abs=2)
    page = (await alice.get("/jobs")).text
    assert 'aria-valuenow="46"' in page and "about 25 s left" in page
