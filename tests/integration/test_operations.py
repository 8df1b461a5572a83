"""Operations: the job transition log, the request log, /metrics, the admin pages and the
`jobs` CLI, after real runs through the fake fal server (a completed, a failing and a
canceled job), and a scan proving no secret reaches a log line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from app.db import jobs as jobs_db
from app.db import library as library_db
from app.db import users as users_db
from app.db.connection import rid
from app.db.records import VideoJob
from app.main import create_app
from app.observability.logging import REDACTED, build_formatter, get_logger
from tests.fakes.fal_server import JobSpec
from tests.helpers import Account, png_bytes
from tests.integration.api_support import in_app, sharing
from tests.integration.test_jobs_fal import fal_settings

ROOT = Path(__file__).resolve().parents[2]
FAL_MARKER = "falkey-MARKER-7d41c0a9:9be2f1"
AWS_MARKER = "awssecret-MARKER-51f0e2c7"
METRICS_TOKEN = "metrics-MARKER-0c9a77e1"
SECRET_MARKER = "secretkey-MARKER-a1b2c3d4"
PASSWORD_MARKER = "password-MARKER-e5f6a7"
TEMPLATE, PRICE = "car-commercial", 80


# -- fixtures ------------------------------------------------------------------------------


class Captured:
    """Everything logged while it is attached, rendered by the app's own formatters (JSON
    and console), so what is asserted is what an operator would read."""

    def __init__(self) -> None:
        self.streams = {"json": io.StringIO(), "console": io.StringIO()}
        self.handlers = []
        for fmt, stream in self.streams.items():
            handler = logging.StreamHandler(stream)
            handler.setFormatter(build_formatter(fmt))
            self.handlers.append(handler)

    @property
    def text(self) -> str:
        return "".join(s.getvalue() for s in self.streams.values())

    def records(self) -> list[dict[str, Any]]:
        lines = self.streams["json"].getvalue().splitlines()
        return [json.loads(line) for line in lines if line.strip()]  # every line is JSON

    def events(self, name: str, **match: Any) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == name
                and all(r.get(k) == v for k, v in match.items())]


@pytest.fixture
def captured():
    cap = Captured()
    root = logging.getLogger()
    for handler in cap.handlers:
        root.addHandler(handler)
    try:
        yield cap
    finally:
        for handler in cap.handlers:
            root.removeHandler(handler)


@pytest.fixture
def fake(fake_fal):
    fake_fal.reset()
    fake_fal.defaults = JobSpec(queue_time=0.1, run_time=0.25)
    saved, fake_fal.key = fake_fal.key, FAL_MARKER
    yield fake_fal
    fake_fal.key = saved


def ops_settings(tmp_path, s3_server, **overrides):
    values = dict(log_format="json", metrics_token=METRICS_TOKEN, fal_key=FAL_MARKER,
                  aws_secret_access_key=AWS_MARKER, secret_key=SECRET_MARKER,
                  status_interval=0.1)
    values.update(overrides)
    return fal_settings(tmp_path, s3_server, **values)


@pytest.fixture
async def ops(tmp_path, s3_server, fake, captured):
    async with AsyncTestClient(create_app(ops_settings(tmp_path, s3_server)),
                               base_url="http://testserver.local") as client:
        yield client


@asynccontextmanager
async def make_admin(client, email: str) -> AsyncIterator[Account]:
    """A second browser on the same app, signed in as an admin."""
    async with sharing(client) as browser:
        account = await Account.signup(browser, email)
        db = client.app.state.services.db
        user = in_app(client, users_db.by_email, db, email)
        in_app(client, users_db.set_admin, db, user.id, True)
        yield account


def uid_of(client, email: str) -> str:
    return in_app(client, users_db.by_email, client.app.state.services.db, email).id


def job_of(client, job_id: str) -> VideoJob:
    return in_app(client, jobs_db.get, client.app.state.services.db, job_id)


async def until(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


async def submitted(client, job_id: str) -> VideoJob:
    """Wait until the driver has handed the job to fal (it has a provider request id)."""
    job = await until(lambda: (j := job_of(client, job_id)).provider_request_id and j)
    assert job, "the job was never submitted"
    return job


def scrape(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    wanted = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and wanted <= ls]
    assert found, f"no sample {name} {labels}"
    return sum(found)


async def metrics(client) -> dict[tuple[str, frozenset], float]:
    r = await client.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return scrape(r.text)


# -- the job log and the metrics ----------------------------------------------------------


async def test_each_transition_is_logged_once_and_counted(ops, fake, captured):
    carol = await Account.signup(ops, "carol@example.com")
    uid = uid_of(ops, carol.email)
    services = ops.app.state.services
    watcher = in_app(ops, _subscribe, services.broker, uid)  # an open page of carol's
    key = await carol.upload()

    ok = (await carol.submit(key)).json()["jobId"]
    assert (await carol.wait_status(ok))["status"] == "completed"
    fake.next_jobs(1, error="Image is NSFW, please try another image")
    bad = (await carol.submit(key)).json()["jobId"]
    assert (await carol.wait_status(bad))["status"] == "failed"
    in_app(ops, _drain, watcher)
    fake.next_jobs(1, never_complete=True)
    gone = (await carol.submit(key)).json()["jobId"]
    await submitted(ops, gone)
    r = await carol.post("/api/templates/video/cancel", params={"jobId": gone})
    assert r.json()["status"] == "canceled"
    assert await until(lambda: fake.count("cancel") >= 1)

    # -- the log: one job.transition per move, with ids, never the email or the prompt
    prompt = job_of(ops, ok).prompt
    for job_id, last, reason in [(ok, "completed", "stored and charged"),
                                 (bad, "failed", "NSFW"),
                                 (gone, "canceled", "canceled by its owner")]:
        moves = captured.events("job.transition", job_id=job_id)
        path = [(m["from"], m["to"]) for m in moves]
        assert path[0] == ("pending", "queued"), path
        assert path[-1][1] == last and len([p for p in path if p[1] == last]) == 1, path
        for a, b in zip(path, path[1:], strict=False):
            assert a[1] == b[0], path  # every move starts where the last one ended
        for m in moves:
            assert m["owner_id"] == uid and m["template"] == TEMPLATE and m["provider"] == "fal"
            assert isinstance(m["attempt"], int) and m["duration_s"] >= 0
            assert m["timestamp"] and m["logger"] == "reelforge.jobs"
            assert m["provider_request_id"] == job_of(ops, job_id).provider_request_id
        final = moves[-1]
        assert reason in final["reason"]
        assert final["level"] == ("warning" if last == "failed" else "info")
        assert final["credits"] == ("capture" if last == "completed" else "release")
        assert final["duration_s"] > 0
    job_lines = [line for line in captured.streams["json"].getvalue().splitlines()
                 if '"job.transition"' in line]
    assert job_lines and not any(carol.email in line or prompt in line for line in job_lines)

    # a provider error, with its HTTP status and fal's message
    (err,) = captured.events("provider.error", kind="result")
    assert err["http_status"] == 422 and "NSFW" in err["error"] and err["transient"] is False
    assert err["job_id"] == bad and err["request_id"] == job_of(ops, bad).provider_request_id
    (failed,) = captured.events("job.provider_error", job_id=bad)
    assert failed["http_status"] == 422 and "NSFW" in failed["error"]
    (fin,) = captured.events("job.finalized", job_id=ok)
    assert fin["bytes"] == len(fake.default_video) and fin["downloaded"] is True

    # the request log: method, path, status, duration; no query string
    posts = captured.events("http.request", method="POST", path="/api/templates/video")
    assert len(posts) == 3 and {p["status"] for p in posts} == {202}
    assert all(p["duration_ms"] >= 0 for p in posts)
    cancel = captured.events("http.request", path="/api/templates/video/cancel")
    assert cancel and cancel[0]["status"] == 200
    assert not [r for r in captured.events("http.request") if "?" in r["path"]]

    # -- the metrics
    m = await metrics(ops)
    for state, n in {"completed": 1, "failed": 1, "canceled": 1, "pending": 0,
                     "processing": 0}.items():
        assert value(m, "reelforge_jobs", state=state) == n, state
    labels = {"template": TEMPLATE, "provider": "fal"}
    for outcome in ("completed", "failed", "canceled"):
        assert value(m, "reelforge_job_duration_seconds_count", outcome=outcome, **labels) == 1
    assert value(m, "reelforge_job_duration_seconds_sum", outcome="completed", **labels) > 0
    assert value(m, "reelforge_job_queue_wait_seconds_count", **labels) >= 2
    assert value(m, "reelforge_job_transitions_total", **{"from": "pending", "to": "queued"}) == 3
    assert value(m, "reelforge_job_transitions_total",
                 **{"from": "finalizing", "to": "completed"}) == 1
    assert value(m, "reelforge_provider_requests_total", provider="fal", kind="submit") == 3
    assert value(m, "reelforge_provider_requests_total", provider="fal", kind="status") >= 2
    assert value(m, "reelforge_provider_requests_total", provider="fal", kind="result") == 2
    assert value(m, "reelforge_provider_requests_total", provider="fal", kind="cancel") >= 1
    assert value(m, "reelforge_provider_errors_total", provider="fal", kind="result",
                 error="permanent") == 1
    assert value(m, "reelforge_finalize_bytes_count", **labels) == 1
    assert value(m, "reelforge_finalize_bytes_sum", **labels) == len(fake.default_video)
    assert value(m, "reelforge_finalize_duration_seconds_count", **labels) == 1
    assert value(m, "reelforge_credit_captures_total") == 1
    assert value(m, "reelforge_credits_captured_total") == PRICE
    assert value(m, "reelforge_credit_releases_total") == 2
    assert value(m, "reelforge_credits_released_total") == 2 * PRICE
    assert value(m, "reelforge_event_streams_open") == 1
    assert value(m, "reelforge_events_published_total") >= 10
    # Each job's create, moves and charge are writes; every page and check reads.
    assert value(m, "reelforge_db_requests_total", kind="write") >= 3 * 3
    assert value(m, "reelforge_db_requests_total", kind="read") > 0
    in_app(ops, _unsubscribe, services.broker, watcher)
    assert value(await metrics(ops), "reelforge_event_streams_open") == 0


async def _subscribe(broker, user_id):
    return broker.subscribe(user_id)


async def _unsubscribe(broker, sub):
    broker.unsubscribe(sub)


async def _drain(sub) -> list:
    return [e for e in sub.get_nowait() if e.event]  # keep-alive pings have no name


async def test_metrics_need_the_token_and_stay_out_of_the_schema(ops, client):
    for headers in [{}, {"authorization": "Bearer wrong"}, {"authorization": METRICS_TOKEN},
                    {"authorization": f"Basic {METRICS_TOKEN}"}]:
        r = await ops.get("/metrics", headers=headers)
        assert r.status_code == 401, headers
        assert "reelforge_" not in r.text and r.headers["www-authenticate"].startswith("Bearer")
    assert "reelforge_jobs" in (await ops.get(
        "/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})).text
    assert "/metrics" not in (await ops.get("/schema/openapi.json")).json()["paths"]
    assert not any(p.startswith("/admin") for p in
                   (await ops.get("/schema/openapi.json")).json()["paths"])
    # without METRICS_TOKEN (the conftest app) it is not served: the unknown route's 404
    r = await client.get("/metrics")
    assert (r.status_code, r.text) == (404, (await client.get("/no-such-route")).text)


# -- admin ----------------------------------------------------------------------------------


async def test_admin_routes_are_the_unknown_page_404_for_everyone_else(ops, fake):
    dave = await Account.signup(ops, "dave@example.com")
    job_id = (await dave.submit(await dave.upload())).json()["jobId"]
    gets = ["/admin", "/admin/", f"/admin/jobs/{job_id}", "/admin?state=failed"]
    posts = [f"/admin/jobs/{job_id}/{a}" for a in ("cancel", "retry", "release")]
    async with sharing(ops) as stranger:
        await stranger.get("/login")  # has a CSRF cookie, is not signed in
        for who in (dave.client, stranger):
            for accept in ("text/html", "application/json"):
                unknown = await who.get("/no-such-page", headers={"accept": accept})
                assert unknown.status_code == 404
                for url in gets:
                    r = await who.get(url, headers={"accept": accept})
                    assert (r.status_code, r.text) == (404, unknown.text), url
                for url in posts:  # refused before the CSRF check: no token needed to see it
                    r = await who.post(url, headers={"accept": accept})
                    assert (r.status_code, r.text) == (404, unknown.text), url
                    token = {"x-csrftoken": who.cookies.get("csrftoken"), "accept": accept}
                    r = await who.post(url, headers=token)
                    assert (r.status_code, r.text) == (404, unknown.text), url
    page = await dave.get("/", headers={"accept": "text/html"})
    assert 'href="/admin"' not in page.text
    assert job_of(ops, job_id).status != "canceled"


async def test_admin_sees_the_queue_and_acts_on_jobs(ops, fake, captured, monkeypatch):
    erin = await Account.signup(ops, "erin@example.com")
    key = await erin.upload()
    fake.next_jobs(1, error="Model overloaded, try again later")
    failed = (await erin.submit(key)).json()["jobId"]
    assert (await erin.wait_status(failed))["status"] == "failed"
    fake.next_jobs(2, never_complete=True)
    running = (await erin.submit(key)).json()["jobId"]
    stuck = (await erin.submit(key)).json()["jobId"]
    await submitted(ops, running)
    await submitted(ops, stuck)
    erin_uid = uid_of(ops, erin.email)
    async with make_admin(ops, "root@example.com") as admin:
        html = {"accept": "text/html"}
        home = await admin.get("/", headers=html)
        assert 'href="/admin"' in home.text  # the nav link, for admins only
        queue = await admin.get("/admin", headers=html)
        assert queue.status_code == 200
        for job_id in (failed, running, stuck):
            assert f'id="admin-job-{job_id}"' in queue.text
        assert "erin@example.com" in queue.text and "Model overloaded" in queue.text
        assert 'sse-swap="admin-jobs"' in queue.text  # the unfiltered page takes new rows
        only_failed = (await admin.get("/admin", params={"state": "failed"})).text
        assert failed in only_failed and running not in only_failed
        assert 'sse-swap="admin-jobs"' not in only_failed
        active = (await admin.get("/admin", params={"state": "active"})).text
        assert running in active and stuck in active and failed not in active
        by_owner = (await admin.get("/admin", params={"owner": "ERIN@example.com"})).text
        assert failed in by_owner and running in by_owner
        nobody = (await admin.get("/admin", params={"owner": "nobody@example.com"})).text
        assert failed not in nobody and "No jobs match" in nobody
        assert failed in (await admin.get("/admin", params={"template": TEMPLATE})).text
        assert failed not in (await admin.get("/admin", params={"template": "other"})).text
        monkeypatch.setattr("app.web.admin.PAGE_SIZE", 2)  # pages of 50, here of 2
        first = (await admin.get("/admin")).text
        second = (await admin.get("/admin", params={"page": 2})).text
        assert first.count('<tr id="admin-job-') == 2 and 'href="/admin?page=2"' in first
        assert second.count('<tr id="admin-job-') == 1 and 'rel="prev"' in second
        assert 'rel="next"' not in second and 'sse-swap="admin-jobs"' not in second
        assert {failed, running, stuck} <= set(re.findall(r'id="admin-job-(\w+)"', first + second))
        monkeypatch.undo()

        page = await admin.get(f"/admin/jobs/{failed}", headers=html)
        assert page.status_code == 200
        for text in ("submitted", "submitted to provider", "Model overloaded", "pending",
                     "queued", f"/admin/jobs/{failed}/retry"):
            assert text in page.text, text
        assert (await admin.get("/admin/jobs/nope", headers=html)).status_code == 404

        # cancel someone else's running job: canceled, released, noted in the timeline
        before = await erin.me()
        r = await admin.post(f"/admin/jobs/{running}/cancel", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].endswith("?done=canceled")
        assert job_of(ops, running).status == "canceled"
        assert (await erin.me())["available"] == before["available"] + PRICE
        timeline = in_app(ops, jobs_db.timeline, ops.app.state.services.db, running)
        assert timeline[-1].to == "canceled" and timeline[-1].reason == \
            "canceled by an admin"
        assert await until(lambda: fake.count("cancel") >= 1)
        r = await admin.post(f"/admin/jobs/{running}/cancel", follow_redirects=False)
        assert r.status_code == 303  # canceling a canceled job is a no-op
        r = await admin.post(f"/admin/jobs/{failed}/cancel", headers=html)
        assert r.status_code == 409 and "already failed" in r.text

        # release a stuck lease: cleared, due now, the driver takes the job again
        db = ops.app.state.services.db
        stuck_request = job_of(ops, stuck).provider_request_id
        for _ in range(100):  # take the lease while no driver step holds it
            taken = in_app(ops, db.write_one, "UPDATE $j SET lease_owner = 'dead-driver', "
                           "lease_until = time::now() + 1h, due_at = time::now() + 1h "
                           "WHERE lease_owner = NONE RETURN AFTER", {"j": rid("video_job", stuck)})
            if taken:
                break
            await asyncio.sleep(0.01)
        assert taken
        await asyncio.sleep(0.2)
        checks = fake.count("status", stuck_request)
        await asyncio.sleep(0.4)
        assert fake.count("status", stuck_request) == checks  # nobody works a leased job
        r = await admin.post(f"/admin/jobs/{stuck}/release", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].endswith("?done=released")
        assert job_of(ops, stuck).lease_owner != "dead-driver"
        assert await until(lambda: fake.count("status", stuck_request) > checks)
        timeline = in_app(ops, jobs_db.timeline, db, stuck)
        assert any(e.reason == "lease released by an admin" for e in timeline)
        idle = await admin.post(f"/admin/jobs/{failed}/release", headers=html)
        assert idle.status_code == 409

        # retry a failed job: a new job, same inputs, same owner, charged normally
        before = await erin.me()
        r = await admin.post(f"/admin/jobs/{failed}/retry", follow_redirects=False)
        assert r.status_code == 303
        new_id = re.fullmatch(r"/admin/jobs/(\w+)\?done=retried", r.headers["location"])[1]
        assert new_id not in (failed, running, stuck)
        old, new = job_of(ops, failed), job_of(ops, new_id)
        assert new.owner_id == erin_uid
        for field in ("template", "start_key", "variables", "prompt", "credits"):
            assert getattr(new, field) == getattr(old, field), field
        assert (await erin.me())["available"] == before["available"] - PRICE
        assert (await erin.wait_status(new_id))["status"] == "completed"
        after = await erin.me()
        assert after["credits"] == before["credits"] - PRICE
        assert after["available"] == before["available"] - PRICE
        r = await admin.post(f"/admin/jobs/{new_id}/retry", headers=html)
        assert r.status_code == 409  # only failed or canceled jobs
        r = await admin.post(f"/admin/jobs/{stuck}/cancel")
        assert r.status_code == 200  # followed to the job page

        # without the CSRF token an admin's action is refused too
        async with sharing(ops) as bare:
            bare.cookies.set("reelforge_session", admin.client.cookies.get("reelforge_session"),
                             domain="testserver.local")
            r = await bare.post(f"/admin/jobs/{new_id}/retry")
            assert r.status_code == 403
        root_id = uid_of(ops, "root@example.com")
        assert captured.events("admin.retry", job_id=failed, new_job_id=new_id,
                               admin_id=root_id)
        assert captured.events("admin.cancel", job_id=running, admin_id=root_id)
        assert captured.events("admin.release_lease", job_id=stuck, admin_id=root_id)


async def test_admin_pages_update_live(ops, fake):
    frank = await Account.signup(ops, "frank@example.com")
    key = await frank.upload()
    services = ops.app.state.services
    async with make_admin(ops, "ops@example.com") as admin:
        admin_id = uid_of(ops, admin.email)
        sub = in_app(ops, _subscribe, services.broker, admin_id)
        in_app(ops, services.notifier.snapshot, admin_id)  # what a stream does on connect
        in_app(ops, _drain, sub)
        fake.next_jobs(1, never_complete=True)
        job_id = (await frank.submit(key)).json()["jobId"]
        await submitted(ops, job_id)
        await admin.post(f"/admin/jobs/{job_id}/cancel")
        events = in_app(ops, _drain, sub)
        names = [e.event for e in events]
        assert "admin-jobs" in names  # the new job's row, for the top of the queue
        assert f"admin-job-{job_id}" in names and f"admin-job-{job_id}-detail" in names
        last_row = [e for e in events if e.event == f"admin-job-{job_id}"][-1]
        assert f'id="admin-job-{job_id}"' in last_row.data and "canceled" in last_row.data
        detail = [e for e in events if e.event == f"admin-job-{job_id}-detail"][-1]
        assert "canceled by an admin" in detail.data and "frank@example.com" in detail.data
        # frank's own stream gets no admin events
        frank_sub = in_app(ops, _subscribe, services.broker, uid_of(ops, frank.email))
        in_app(ops, services.notifier.snapshot, uid_of(ops, frank.email))
        in_app(ops, _drain, frank_sub)
        await frank.submit(key)
        await asyncio.sleep(0.3)
        assert not [e for e in in_app(ops, _drain, frank_sub) if e.event.startswith("admin")]
        # once the admin's stream closes, admin events stop being rendered for them
        in_app(ops, _unsubscribe, services.broker, sub)
        await frank.submit(key)
        await asyncio.sleep(0.2)
        assert admin_id not in services.notifier.admins


# -- CLI --------------------------------------------------------------------------------------


def test_cli_jobs_list_show_retry_cancel(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)  # the embedded surrealkv default
    monkeypatch.setenv("VIDEO_PROVIDER", "local")
    monkeypatch.setenv("LOG_FORMAT", "json")
    from app.cli import main

    main(["users", "create", "--email", "gina@example.com", "--password", "long-enough-1"])
    failed, active = asyncio.run(_two_jobs(tmp_path))
    capsys.readouterr()

    main(["jobs", "list"])
    out = capsys.readouterr().out
    assert failed in out and active in out and "gina@example.com" in out
    assert "Render failed: out of memory" in out
    main(["jobs", "list", "--state", "failed"])
    out = capsys.readouterr().out
    assert failed in out and active not in out
    main(["jobs", "show", failed])
    out = capsys.readouterr().out
    assert "timeline:" in out and "pending -> failed" in out and "test failure" in out
    assert "gina@example.com" in out

    main(["jobs", "retry", failed])
    out = capsys.readouterr().out
    new_id = re.search(r"retried \w+ as (\w+)", out)[1]
    main(["jobs", "cancel", active])
    captured_io = capsys.readouterr()
    assert f"canceled {active}" in captured_io.out
    logged = [json.loads(line) for line in captured_io.err.splitlines()
              if '"job.transition"' in line]
    assert logged and logged[-1]["job_id"] == active and logged[-1]["to"] == "canceled"
    assert logged[-1]["reason"] == "canceled from the command line"

    with pytest.raises(SystemExit, match="only a failed or canceled job"):
        main(["jobs", "retry", new_id])
    with pytest.raises(SystemExit, match="no job"):
        main(["jobs", "show", "nosuchjob"])
    main(["jobs", "list", "--state", "active"])
    out = capsys.readouterr().out
    assert new_id in out and active not in out
    user = asyncio.run(_user(tmp_path, "gina@example.com"))
    assert user.reserved == PRICE and user.active_jobs == 1  # only the retry holds


def test_cli_jobs_commands_honour_the_database_lock(tmp_path):
    env = {**os.environ, "DATA_DIR": str(tmp_path), "VIDEO_PROVIDER": "local"}
    env.pop("DATABASE_URL", None)
    lock = FileLock(str(tmp_path.resolve() / "db") + ".lock")
    with lock.acquire(timeout=0):  # as a running `serve` holds it
        runs = [subprocess.Popen([sys.executable, "-m", "app", *args], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for args in (["jobs", "list"], ["jobs", "cancel", "abc"])]
        for run in runs:  # one reads the database, one would change it: both refused
            _out, err = run.communicate(timeout=60)
            assert run.returncode == 2, err
            assert "already open in another process" in err


def test_cli_cancel_tells_fal(tmp_path, monkeypatch, capsys, fake_fal):
    fake_fal.reset()
    fake_fal.defaults = JobSpec(never_complete=True)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("VIDEO_PROVIDER", "fal")
    monkeypatch.setenv("FAL_KEY", fake_fal.key)
    from app.cli import main

    main(["users", "create", "--email", "ivy@example.com", "--password", "long-enough-1"])
    job_id, request_id = asyncio.run(_job_at_fal(tmp_path, fake_fal.key))
    capsys.readouterr()
    main(["jobs", "cancel", job_id])
    assert "canceled at fal" in capsys.readouterr().out
    assert fake_fal.count("cancel", request_id) == 1


async def _job_at_fal(data_dir: Path, key: str) -> tuple[str, str]:
    """A job the way a driver leaves it after submitting: queued, with fal's request id."""
    from app.jobs.states import Status
    from app.providers.base import SubmitRequest
    from app.providers.fal import FalProvider
    from app.services import close_services, open_services
    from app.settings import Settings

    services = await open_services(Settings(data_dir=data_dir), with_driver=False)
    try:
        uid = (await users_db.by_email(services.db, "ivy@example.com")).id
        image = f"users/{uid}/library/start.png"
        await library_db.add(services.db, uid, image, "image", "image/png", 10)
        job = await services.jobs.create(uid, TEMPLATE, image, {"BRAND": "A", "MODEL": "B"},
                                         "fal")
        provider = FalProvider(key=key)
        try:
            request_id = await provider.submit(SubmitRequest(
                endpoint=job.endpoint, prompt="p", image_url="data:image/png;base64,AA==",
                parameters={}))
        finally:
            await provider.aclose()
        job_id = job.id
        await services.jobs.move(job_id, Status.QUEUED, reason="submitted to provider",
                                 fields={"provider_request_id": request_id})
        return job_id, request_id
    finally:
        await close_services(services)


async def _two_jobs(data_dir: Path) -> tuple[str, str]:
    from app.jobs.states import Status
    from app.services import close_services, open_services
    from app.settings import Settings

    services = await open_services(Settings(data_dir=data_dir), with_driver=False)
    try:
        user = await users_db.by_email(services.db, "gina@example.com")
        uid = user.id
        key = f"users/{uid}/library/start.png"
        data = png_bytes()
        await services.storage.put_bytes(key, data, "image/png")
        await library_db.add(services.db, uid, key, "image", "image/png", len(data))
        vars_ = {"BRAND": "Aurora", "MODEL": "S1"}
        failed = await services.jobs.create(uid, TEMPLATE, key, vars_, "local")
        failed_id = failed.id
        await services.jobs.move(failed_id, Status.FAILED, reason="test failure",
                                 fields={"error": "Render failed: out of memory"})
        active = await services.jobs.create(uid, TEMPLATE, key, vars_, "local")
        return failed_id, active.id
    finally:
        await close_services(services)


async def _user(data_dir: Path, email: str) -> dict:
    from app.db.connection import Database
    from app.settings import Settings

    db = Database(Settings(data_dir=data_dir))
    await db.connect()
    try:
        return await users_db.by_email(db, email)
    finally:
        await db.close()


# -- no secrets in the logs ------------------------------------------------------------------


def test_redaction_covers_every_kind_of_secret(captured):
    presigned = ("https://bucket.s3.example/users/u/library/a.png?X-Amz-Algorithm=AWS4-HMAC-"
                 "SHA256&X-Amz-Credential=AKIAEXAMPLE123%2F20250101&X-Amz-Signature=SIGMARK1")
    log = get_logger("reelforge.test")
    log.info("checking", fal_key="PLAINKEY1", api_key="PLAINKEY2", aws_secret_access_key="SK3",
             password="PW4", headers={"Authorization": "Key FALVALUE5", "Cookie": "C6=1",
                                      "x-fal-webhook-signature": "ab" * 64, "ok": "visible"},
             url=presigned, note="send Bearer BEARERVALUE7 and Key KEYVALUE8xx",
             pairs=[("set-cookie", "reelforge_session=SESSIONVALUE9")], job_id="visible-id")
    logging.getLogger("uvicorn.error").warning(
        "GET /media/x.png?Signature=SIGMARK2&Expires=1 cookie: reelforge_session=SESSION10; "
        "csrftoken=CSRF11 %s", "signature " + "cd" * 64)
    try:
        raise RuntimeError(f"upload failed for {presigned}")
    except RuntimeError:
        log.exception("boom")
    text = captured.text
    for secret in ("PLAINKEY1", "PLAINKEY2", "SK3", "PW4", "FALVALUE5", "C6=1", "ab" * 64,
                   "SIGMARK1", "SIGMARK2", "BEARERVALUE7", "KEYVALUE8xx", "SESSIONVALUE9",
                   "SESSION10", "CSRF11", "cd" * 64, "AKIAEXAMPLE123"):
        assert secret not in text, secret
    assert "visible" in text and "visible-id" in text and REDACTED in text
    assert "https://bucket.s3.example/users/u/library/a.png?" in text  # the URL, not its query
    assert "upload failed" in text and "Traceback" in text


async def test_no_secret_reaches_any_log_line(tmp_path, s3_server, fake, captured):
    """A job driven by a signed webhook with S3 (presigned URLs) storage, a failing job whose
    error quotes its presigned start-image URL, sign-in cookies, a FAL_KEY, a forged webhook,
    a metrics scrape: every line logged on the way is scanned for every secret."""
    settings = ops_settings(tmp_path, s3_server, public_base_url="https://app.example",
                            allowed_hosts="*", status_interval=None)
    async with AsyncTestClient(create_app(settings), base_url="https://testserver.local") as c:
        await Account.signup(c, "hank@example.com", password=PASSWORD_MARKER)
        c.cookies.clear()
        await c.get("/login")
        r = await c.post("/login", data={"email": "hank@example.com",
                                         "password": PASSWORD_MARKER,
                                         "_csrf_token": c.cookies.get("csrftoken")},
                         follow_redirects=False)
        assert r.status_code == 303
        hank = Account(c, "hank@example.com")
        key = await hank.upload()
        library = (await hank.get("/api/library")).json()
        assert "X-Amz-Signature=" in library[0]["url"]  # storage hands out presigned URLs

        job_id = (await hank.submit(key)).json()["jobId"]
        request_id = (await submitted(c, job_id)).provider_request_id
        image_url = fake.jobs[request_id].arguments["image_url"]
        assert "X-Amz-Signature=" in image_url  # fal got a presigned URL
        await until(lambda: fake.jobs[request_id].state() == "COMPLETED")
        forged = fake.build_webhook(request_id, forged=True)
        assert (await c.post("/api/webhooks/fal", headers=forged.headers,
                             content=forged.body)).status_code == 401
        signed = fake.build_webhook(request_id)
        assert (await c.post("/api/webhooks/fal", headers=signed.headers,
                             content=signed.body)).status_code == 200
        assert (await hank.wait_status(job_id, timeout=15))["status"] == "completed"

        fake.next_jobs(1, never_complete=True)
        bad = (await hank.submit(key)).json()["jobId"]
        bad_request = (await submitted(c, bad)).provider_request_id
        bad_image_url = fake.jobs[bad_request].arguments["image_url"]
        fake.update_job(bad_request, error=f"Failed to download the image at {bad_image_url}")
        fake.complete_now(bad_request)
        msg = fake.build_webhook(bad_request)  # fal's webhook could not reach app.example
        await c.post("/api/webhooks/fal", headers=msg.headers, content=msg.body)
        final = await hank.wait_status(bad, timeout=15)
        assert final["status"] == "failed" and "Failed to download" in final["error"]

        await c.get(f"/api/library?X-Amz-Signature=QUERYMARKER&token={METRICS_TOKEN}",
                    headers={"authorization": f"Key {FAL_MARKER}"})
        assert (await c.get("/metrics", headers={
            "authorization": f"Bearer {METRICS_TOKEN}"})).status_code == 200
        secrets = {
            "FAL_KEY": FAL_MARKER, "AWS secret": AWS_MARKER, "SECRET_KEY": SECRET_MARKER,
            "METRICS_TOKEN": METRICS_TOKEN, "password": PASSWORD_MARKER,
            "session cookie": c.cookies.get("reelforge_session"),
            "CSRF cookie": c.cookies.get("csrftoken"), "query marker": "QUERYMARKER",
            "webhook signature": signed.headers["x-fal-webhook-signature"],
            "forged signature": forged.headers["x-fal-webhook-signature"],
        }
        for n, url in enumerate([library[0]["url"], image_url, bad_image_url]):
            secrets[f"presigned {n}"] = re.search(r"X-Amz-Signature=([0-9a-f]+)", url)[1]
            secrets[f"credential {n}"] = re.search(r"X-Amz-Credential=([^&]+)", url)[1]

    text = captured.text
    assert '"job.transition"' in text and '"http.request"' in text and "provider.error" in text
    for name, secret in secrets.items():
        assert secret and len(secret) >= 8, name
        assert secret not in text, f"{name} reached the log"
    assert REDACTED in text  # the failed job's reason quoted a presigned URL: it was scrubbed
    assert "hank@example.com" not in "\n".join(
        line for line in captured.streams["json"].getvalue().splitlines()
        if '"job.transition"' in line)
