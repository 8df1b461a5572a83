"""Who may read the metrics, and what a scrape costs: `/metrics` only with METRICS_TOKEN
(else the unknown route's 404), METRICS_PORT serving this app's own registry on 127.0.0.1,
and jobs by state read from the `job_count` counters that a database event keeps exact
(scripts/schema.surql), never from a scan of video_job."""

from __future__ import annotations

import socket
import uuid

import httpx
import pytest

from app.db.connection import Database
from app.db.schema import apply_schema, forget_applied
from app.jobs.states import Status
from app.observability.metrics import JOB_COUNTS_QUERY, job_counts
from app.settings import Settings
from tests.helpers import Account
from tests.integration.api_support import in_app, running_app
from tests.integration.test_operations import scrape, value

TOKEN = "scrape-token-5d1e"
STATES = [s.value for s in Status]
GROUP_BY = "SELECT status, count() AS n FROM video_job GROUP BY status"


async def test_without_a_token_metrics_is_the_unknown_route(client):
    await client.get("/login")  # a CSRF cookie, so the unsafe methods pass that check too
    for accept in ("text/html", "application/json", "text/plain"):
        for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"):
            headers = {"accept": accept, "x-csrftoken": client.cookies.get("csrftoken")}
            unknown = await client.request(method, "/no-such-route", headers=headers)
            for auth in ({}, {"authorization": f"Bearer {TOKEN}"}):
                r = await client.request(method, "/metrics", headers={**headers, **auth})
                assert (r.status_code, r.headers["content-type"], r.text) == (
                    404, unknown.headers["content-type"], unknown.text), (method, accept)


async def test_metrics_port_serves_this_apps_registry_on_localhost_only(tmp_path):
    settings = Settings(data_dir=tmp_path, database_url="mem://", metrics_port=0)
    async with running_app(settings, idle=True) as c:
        host, port = c.app.state.metrics_address
        assert host == "127.0.0.1"  # bound to this machine only
        alice = await Account.signup(c, "alice@example.com")
        key = await alice.upload()
        for _ in range(3):
            assert (await alice.submit(key)).status_code == 202  # pending: the driver is idle
        assert (await c.get("/metrics")).status_code == 404  # no token: not on the app
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            r = await http.get("/metrics")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            samples = scrape(r.text)
            assert value(samples, "reelforge_jobs", state="pending") == 3
            assert value(samples, "reelforge_jobs", state="completed") == 0
            # this app's registry, not the process-wide default one
            assert "reelforge_event_streams_open" in r.text and "python_info" not in r.text
            for path in ("/", "/metrics/x", "/health", "/api/me"):
                assert (await http.get(path)).status_code == 404, path
            # a DNS name rebound to 127.0.0.1 by some page in a local browser gets nothing
            assert (await http.get("/metrics",
                                   headers={"host": f"evil.example:{port}"})).status_code == 404
            assert (await http.get("/metrics",
                                   headers={"host": f"localhost:{port}"})).status_code == 200
    with pytest.raises(httpx.ConnectError):  # stopped with the app
        httpx.get(url + "/metrics", timeout=2)


async def test_with_a_token_and_a_port_both_answer(tmp_path):
    settings = Settings(data_dir=tmp_path, database_url="mem://", metrics_port=0,
                        metrics_token=TOKEN)
    async with running_app(settings, idle=True) as c:
        port = c.app.state.metrics_address[1]
        assert (await c.get("/metrics")).status_code == 401
        ok = await c.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and "reelforge_jobs" in ok.text
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert r.status_code == 200 and "reelforge_jobs" in r.text


async def test_a_busy_metrics_port_does_not_stop_the_app(tmp_path):
    """As with `serve --workers N`, where the first worker holds the port."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        settings = Settings(data_dir=tmp_path, database_url="mem://",
                            metrics_port=busy.getsockname()[1])
        async with running_app(settings, idle=True) as c:
            assert (await c.get("/health")).status_code == 200
            assert not hasattr(c.app.state, "metrics_address")


# -- the counters ----------------------------------------------------------------------------

async def _create_job(db: Database, owner: str, status: str) -> str:
    """A job as any process would write it (far-off due_at: no driver picks it up)."""
    job_id = uuid.uuid4().hex
    await db.write(
        'CREATE type::thing("video_job", $id) SET owner = type::thing("user", $owner), '
        'template = "car-commercial", template_name = "Car", start_key = "k", variables = {}, '
        'prompt = "p", provider = "local", endpoint = "e", parameters = {}, status = $status, '
        "credits = 1, deadline_at = time::now() + 1d, due_at = time::now() + 1y",
        {"id": job_id, "owner": owner, "status": status})
    return job_id


async def _owner(db: Database) -> str:
    owner = uuid.uuid4().hex
    await db.write('CREATE type::thing("user", $id) SET email = $email, password_hash = "x"',
                   {"id": owner, "email": f"{owner}@example.com"})
    return owner


async def _grouped(db: Database) -> dict[str, int]:
    return {row["status"]: int(row["n"]) for row in await db.read_one(GROUP_BY)}


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {state: n for state, n in counts.items() if n}


async def _mix_of_writes(db: Database) -> list[str]:
    """Creates, status changes one by one and in bulk, writes that leave the status alone,
    a delete, an UPSERT and a rolled-back transaction."""
    owner = await _owner(db)
    ids = [await _create_job(db, owner, STATES[i % len(STATES)]) for i in range(40)]
    for job_id in ids[:10]:
        await db.write('UPDATE type::thing("video_job", $id) SET status = "processing"',
                       {"id": job_id})
    await db.write('UPDATE video_job SET status = "failed" WHERE status = "queued"')
    await db.write('UPDATE video_job SET attempts += 1 WHERE status = "pending"')  # no change
    await db.write('UPDATE video_job SET status = status WHERE status = "canceled"')  # same
    await db.write('DELETE type::thing("video_job", $id)', {"id": ids[11]})
    await db.write('UPSERT type::thing("video_job", $id) SET status = "completed"',
                   {"id": ids[12]})
    with pytest.raises(Exception, match="nope"):  # noqa: PT011 - Thrown, from the db layer
        await db.write('BEGIN; UPDATE video_job SET status = "canceled" WHERE status = '
                       '"processing"; THROW "nope"; COMMIT;')
    return ids


async def test_counters_follow_every_kind_of_write(db):
    await _mix_of_writes(db)
    grouped = await _grouped(db)
    assert len(_nonzero(grouped)) >= 5 and grouped["failed"] > 0  # a real mix
    assert _nonzero(await job_counts(db)) == grouped


async def test_existing_jobs_are_counted_once_when_the_schema_first_applies(db):
    # a database from before the counters: no event, no job_count table, jobs already there,
    # and another schema applied
    await db.write("REMOVE EVENT job_count ON TABLE video_job; REMOVE TABLE job_count;")
    await forget_applied(db)
    await _mix_of_writes(db)
    assert await job_counts(db) == {}
    grouped = await _grouped(db)
    await apply_schema(db)  # the backfill
    assert _nonzero(await job_counts(db)) == grouped
    await apply_schema(db)  # applying again counts nothing twice
    await _create_job(db, await _owner(db), "pending")
    grouped["pending"] = grouped.get("pending", 0) + 1
    assert _nonzero(await job_counts(db)) == grouped


async def test_a_scrape_reads_the_counters_not_the_jobs(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path, database_url="mem://", metrics_token=TOKEN)
    async with running_app(settings, idle=True) as c:
        db = c.app.state.services.db
        in_app(c, _mix_of_writes, db)
        alice = await Account.signup(c, "alice@example.com")
        key = await alice.upload()
        job = (await alice.submit(key)).json()["jobId"]
        await alice.post(f"/api/templates/video/cancel?jobId={job}")
        await alice.submit(key)
        grouped = in_app(c, _grouped, db)

        queries: list[str] = []
        run = db._run

        async def recording(sql, vars=None, timeout=None):
            queries.append(sql)
            return await run(sql, vars, timeout)

        monkeypatch.setattr(db, "_run", recording)
        r = await c.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
        monkeypatch.undo()
    assert r.status_code == 200
    samples = scrape(r.text)
    assert {s: value(samples, "reelforge_jobs", state=s) for s in STATES} == {
        s: grouped.get(s, 0) for s in STATES}
    assert JOB_COUNTS_QUERY in queries
    assert not [q for q in queries if "video_job" in q or "GROUP BY" in q.upper()], queries
