"""Money that must not leak: a cancel once the provider has rendered (it is paid for, so the
job completes and is charged), a retry of one failed job clicked many times at once (one new
job, one reservation), and the Idempotency-Key of POST /api/templates/video (one job per key,
the first answer again, also under concurrency). Real parts: the app through AsyncTestClient,
the fake fal server through fal_client, moto S3, the embedded database.

Each test fails without its fix: the guard in the cancel's UPDATE, `retried_as` set in the
create transaction, the key recorded in the same transaction as the job."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from app.db import jobs as jobs_db
from app.db import users as users_db
from app.db.connection import rid
from app.db.idempotency import purge_expired
from app.db.records import VideoJob
from app.jobs.service import IdempotentReplay
from app.jobs.states import Status
from app.main import create_app
from tests.fakes.fal_server import JobSpec
from tests.helpers import Account
from tests.integration.api_support import count, in_app, job_row, running_app, sharing
from tests.integration.test_jobs_fal import fal_settings
from tests.integration.test_operations import make_admin

PRICE = 80  # car-commercial
VARS = {"BRAND": "Aurora", "MODEL": "S1"}


@pytest.fixture
def fake(fake_fal):
    fake_fal.reset()
    fake_fal.defaults = JobSpec(queue_time=0.1, run_time=0.2)
    return fake_fal


@pytest.fixture
async def fal_app(tmp_path, s3_server, fake):
    async with AsyncTestClient(create_app(fal_settings(tmp_path, s3_server, status_interval=0.1)),
                               base_url="http://testserver.local") as client:
        yield client


async def until_status(client, job_id: str, status: str, timeout: float = 15) -> VideoJob:
    deadline = time.monotonic() + timeout
    while True:
        job = job_row(client, job_id)
        if job and job.status == status:
            return job
        assert time.monotonic() < deadline, (status, job and job.status)
        await asyncio.sleep(0.02)


def books(client, email: str) -> dict[str, Any]:
    db = client.app.state.services.db
    user = in_app(client, users_db.by_email, db, email)
    uid = user.id
    return {"balance": user.balance, "reserved": user.reserved,
            "active": user.active_jobs,
            "ledger": in_app(client, users_db.ledger_sum, db, uid),
            "jobs": in_app(client, db.read_one,
                           "SELECT VALUE meta::id(id) FROM video_job WHERE owner = $u",
                           {"u": rid("user", user.id)})}


def card_of(html: str, job_id: str) -> str:
    found = re.search(rf'<article id="job-{job_id}".*?</article>', html, re.S)
    assert found, job_id
    return found[0]


# -- 1. a cancel after the render is refused, and the job is charged ----------------------

async def test_a_cancel_while_finalizing_is_refused_and_the_job_is_charged(fal_app, fake):
    """The download of the finished video is held for 4 s, so the job sits in finalizing
    (the provider has rendered and been paid). Every cancel path answers 409; the job then
    completes and is charged once."""
    person = await Account.signup(fal_app, "paid@example.com")
    key = await person.upload()
    fake.delay_next("video", 4.0)
    job_id = (await person.submit(key)).json()["jobId"]
    await until_status(fal_app, job_id, "finalizing")
    fake.next_jobs(1, never_complete=True)
    running = (await person.submit(key)).json()["jobId"]  # the control: cancelable

    r = await person.post("/api/templates/video/cancel", params={"jobId": job_id})
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "already_rendered"
    assert "already been rendered" in r.json()["message"]
    r = await person.post("/api/templates/video/cancel", params={"jobId": job_id},
                          headers={"hx-request": "true"})
    assert r.status_code == 409  # the card's own button gets the same answer

    # the job card says it is rendered and offers no Cancel; a running one still does
    page = (await person.get("/jobs", headers={"accept": "text/html"})).text
    rendered, other = card_of(page, job_id), card_of(page, running)
    assert "Rendered: finishing up" in rendered and "/cancel" not in rendered
    assert "Rendered" not in other and f"/api/templates/video/cancel?jobId={running}" in other

    async with make_admin(fal_app, "ops@example.com") as admin:
        detail = (await admin.get(f"/admin/jobs/{job_id}", headers={"accept": "text/html"})).text
        assert "Rendered: finishing up" in detail and f"/admin/jobs/{job_id}/cancel" not in detail
        assert f"/admin/jobs/{running}/cancel" in (await admin.get(f"/admin/jobs/{running}")).text
        r = await admin.post(f"/admin/jobs/{job_id}/cancel", headers={"accept": "text/html"})
        assert r.status_code == 409 and "already been rendered" in r.text

    assert job_row(fal_app, job_id).status == "finalizing"
    assert (await person.wait_status(job_id, timeout=20))["status"] == "completed"
    r = await person.post("/api/templates/video/cancel", params={"jobId": running})
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    b = books(fal_app, person.email)
    assert b["balance"] == 1000 - PRICE == b["ledger"]  # charged once, the other released
    assert b["reserved"] == 0 and b["active"] == 0


@pytest.mark.parametrize(("status", "provider_done"), [
    ("finalizing", False), ("processing", True), ("queued", True)])
async def test_the_cancel_is_refused_in_the_database_too(settings, status, provider_done,
                                                         monkeypatch):
    """A cancel that read the job just before the provider finished: its check passes, and
    the conditional UPDATE in the cancel's transaction must still refuse."""
    async with running_app(settings, idle=True) as client:
        person = await Account.signup(client, "race@example.com")
        job_id = (await person.submit(await person.upload())).json()["jobId"]
        db = client.app.state.services.db
        stale = msgspec.structs.replace(job_row(client, job_id), status=Status.PROCESSING,
                                        provider_done=False)
        in_app(client, db.write, "UPDATE $j SET status = $s, provider_done = $d",
               {"j": rid("video_job", job_id), "s": status, "d": provider_done})
        real_get, reads = jobs_db.get_owned, []

        async def stale_first(db, jid, uid):  # what the cancel saw a moment ago
            reads.append(jid)
            return stale if len(reads) == 1 else await real_get(db, jid, uid)

        monkeypatch.setattr(jobs_db, "get_owned", stale_first)
        r = await person.post("/api/templates/video/cancel", params={"jobId": job_id})
        assert r.status_code == 409 and r.json()["error"] == "already_rendered", r.text
        assert len(reads) == 2  # the UPDATE refused, then the fresh read explained why
        assert job_row(client, job_id).status == status
        assert books(client, person.email)["reserved"] == PRICE  # still held, to be charged
        card = card_of((await person.get("/jobs", headers={"accept": "text/html"})).text,
                       job_id)
        assert "Rendered: finishing up" in card and "/cancel" not in card


def test_cli_cancel_of_a_rendered_job_is_refused(tmp_path, monkeypatch, capsys):
    from app.cli import main
    from tests.integration.test_operations import _two_jobs

    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("VIDEO_PROVIDER", "local")
    main(["users", "create", "--email", "gina@example.com", "--password", "long-enough-1"])
    _failed, active = asyncio.run(_two_jobs(tmp_path))
    asyncio.run(_set(tmp_path, active, status="finalizing"))
    with pytest.raises(SystemExit, match="already been rendered"):
        main(["jobs", "cancel", active])
    main(["jobs", "show", active])
    assert "state:       finalizing" in capsys.readouterr().out


async def _set(data_dir, job_id: str, **fields: Any) -> None:
    from app.db.connection import Database, rid
    from app.settings import Settings

    db = Database(Settings(data_dir=data_dir))
    await db.connect()
    try:
        await db.write("UPDATE $j MERGE $f", {"j": rid("video_job", job_id), "f": fields})
    finally:
        await db.close()


# -- 2. one retry per failed job ------------------------------------------------------------

async def test_repeated_admin_retries_make_one_job(fal_app, fake):
    """Six retries of one failed job from the admin page (the in-process test client runs
    them one after another; truly concurrent ones race below, on the engine, and over two
    processes in test_retries_and_keys_hold_across_processes)."""
    person = await Account.signup(fal_app, "retry@example.com")
    fake.next_jobs(1, error="Model overloaded")
    failed = (await person.submit(await person.upload())).json()["jobId"]
    assert (await person.wait_status(failed))["status"] == "failed"
    fake.defaults = JobSpec(never_complete=True)  # the retry stays active: its hold shows
    async with make_admin(fal_app, "root@example.com") as admin:
        answers = await asyncio.gather(*[
            admin.post(f"/admin/jobs/{failed}/retry", follow_redirects=False)
            for _ in range(6)])
        assert [r.status_code for r in answers] == [303] * 6
        places = [r.headers["location"] for r in answers]
        new_ids = {re.fullmatch(r"/admin/jobs/(\w+)\?done=\w+", p)[1] for p in places}
        assert len(new_ids) == 1, places
        (new_id,) = new_ids
        assert sum(p.endswith("?done=retried") for p in places) == 1
        assert sum(p.endswith("?done=already_retried") for p in places) == 5
        # a later retry, from the page: sent to that job with a notice, not an error page
        page = await admin.post(f"/admin/jobs/{failed}/retry", headers={"accept": "text/html"})
        assert page.status_code == 200 and str(page.url).endswith(
            f"/admin/jobs/{new_id}?done=already_retried")
        assert "already been retried" in page.text
        original = (await admin.get(f"/admin/jobs/{failed}")).text
        assert f'href="/admin/jobs/{new_id}"' in original
        assert f"/admin/jobs/{failed}/retry" not in original  # no Retry button any more

    # and the engine itself, raced on its own event loop (every caller reads the job before
    # any has written): still the same one job
    services = fal_app.app.state.services

    async def race():
        return await asyncio.gather(*[services.jobs.retry(failed, "fal") for _ in range(8)])

    results = in_app(fal_app, race)
    assert {job.id for job, _created in results} == {new_id}
    assert not any(created for _job, created in results)
    b = books(fal_app, person.email)
    assert sorted(b["jobs"]) == sorted([failed, new_id])
    assert b["reserved"] == PRICE and b["active"] == 1  # one reservation
    assert job_row(fal_app, failed).retried_as == new_id
    assert job_row(fal_app, new_id).retry_of == failed


async def test_the_first_retries_race_on_the_engine(settings):
    """Eight retries of a never-retried job at once on the app's loop: each reads the job
    (not retried yet) before any writes, so only the transaction can keep it to one."""
    async with running_app(settings, idle=True) as client:
        person = await Account.signup(client, "race2@example.com")
        job_id = (await person.submit(await person.upload())).json()["jobId"]
        r = await person.post("/api/templates/video/cancel", params={"jobId": job_id})
        assert r.json()["status"] == "canceled"
        services = client.app.state.services

        async def race():
            return await asyncio.gather(
                *[services.jobs.retry(job_id, "local") for _ in range(8)],
                return_exceptions=True)

        results = in_app(client, race)
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert len({job.id for job, _ in results}) == 1
        assert sum(created for _, created in results) == 1
        b = books(client, person.email)
        assert len(b["jobs"]) == 2 and b["reserved"] == PRICE and b["active"] == 1


def test_cli_retry_twice_names_the_first_retry(tmp_path, monkeypatch, capsys):
    from app.cli import main
    from tests.integration.test_operations import _two_jobs

    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("VIDEO_PROVIDER", "local")
    main(["users", "create", "--email", "gina@example.com", "--password", "long-enough-1"])
    failed, _active = asyncio.run(_two_jobs(tmp_path))
    capsys.readouterr()
    main(["jobs", "retry", failed])
    new_id = re.search(r"retried \w+ as (\w+)", capsys.readouterr().out)[1]
    main(["jobs", "retry", failed])
    assert f"already retried as {new_id}; nothing new was started" in capsys.readouterr().out
    main(["jobs", "list", "--state", "pending"])
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 3 and new_id in out  # header, active, retry


# -- 3. Idempotency-Key --------------------------------------------------------------------

def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def _submit(person: Account, key: str | None, image: str, **variables: str):
    return await person.post("/api/templates/video", headers=keyed(key) if key else {},
                             json={"templateSlug": "car-commercial", "startKey": image,
                                   "variables": {**VARS, **variables}})


async def test_the_same_key_returns_the_first_answer_and_creates_nothing(settings):
    async with running_app(settings, idle=True) as client:
        person = await Account.signup(client, "keys@example.com")
        image = await person.upload()
        first = await _submit(person, "order-1", image)
        assert first.status_code == 202
        again = [await _submit(person, "order-1", image) for _ in range(3)]
        assert [(r.status_code, r.json()) for r in again] == [(202, first.json())] * 3
        b = books(client, person.email)
        assert b["jobs"] == [first.json()["jobId"]] and b["reserved"] == PRICE

        # another body with the same key: refused, naming the header, nothing made
        other = await _submit(person, "order-1", image, MODEL="S2")
        assert other.status_code == 422, other.text
        assert other.json()["error"] == "idempotency_key_reused"
        assert other.json()["field"] == "Idempotency-Key"
        assert "Idempotency-Key" in other.json()["message"]
        # a new key, or none, is a new submission
        assert (await _submit(person, "order-2", image)).json()["jobId"] != first.json()["jobId"]
        assert (await _submit(person, None, image)).status_code == 202
        assert len(books(client, person.email)["jobs"]) == 3

        # keys are per person: the same key from someone else is theirs
        async with sharing(client) as browser:
            other_person = await Account.signup(browser, "other@example.com")
            theirs = await _submit(other_person, "order-1", await other_person.upload())
            assert theirs.status_code == 202
            assert theirs.json()["jobId"] != first.json()["jobId"]


async def test_a_refusal_is_not_remembered(settings):
    """Only a submission that made a job binds its key: a 402 created nothing, so the same
    key succeeds once the person can pay (one job for the key all the same)."""
    settings.signup_credits = 50
    async with running_app(settings, idle=True) as client:
        person = await Account.signup(client, "poor@example.com")
        image = await person.upload()
        assert (await _submit(person, "k", image)).status_code == 402
        in_app(client, users_db.grant, client.app.state.services.db,
               in_app(client, users_db.by_email, client.app.state.services.db,
                      person.email).id, 100, "grant")
        first = await _submit(person, "k", image)
        assert first.status_code == 202
        assert (await _submit(person, "k", image)).json() == first.json()
        assert len(books(client, person.email)["jobs"]) == 1


async def test_concurrent_requests_with_one_key_make_one_job(settings):
    """Over HTTP, then raced on the app's loop (see also the two-process test below)."""
    async with running_app(settings, idle=True) as client:
        person = await Account.signup(client, "burst@example.com")
        image = await person.upload()
        answers = [await _submit(person, "burst", image) for _ in range(8)]
        assert {r.status_code for r in answers} == {202}
        assert len({r.json()["jobId"] for r in answers}) == 1
        # on the app's own loop, every request has passed the first look-up before any
        # writes: only the transaction that records the job can catch the others
        services = client.app.state.services
        uid = in_app(client, users_db.by_email, services.db, person.email).id

        async def race():
            return await asyncio.gather(*[
                services.jobs.create(uid, "car-commercial", image, VARS, "local",
                                     idempotency_key="race") for _ in range(8)],
                return_exceptions=True)

        results = in_app(client, race)
        made = [r for r in results if isinstance(r, VideoJob)]
        replays = [r for r in results if isinstance(r, IdempotentReplay)]
        assert len(made) == 1 and len(replays) == 7, results
        assert {r.job_id for r in replays} == {made[0].id}
        b = books(client, person.email)
        assert len(b["jobs"]) == 2 and b["reserved"] == 2 * PRICE and b["active"] == 2


async def test_keys_expire_and_are_purged(settings):
    async with running_app(settings, idle=True) as client:
        person = await Account.signup(client, "old@example.com")
        image = await person.upload()
        first = (await _submit(person, "old", image)).json()
        db = client.app.state.services.db
        (stored,) = in_app(client, db.read_one, "SELECT * FROM idempotency_key")
        assert stored["job"] == first["jobId"] and stored["status"] == 202
        kept = (stored["expires_at"] - stored["created_at"]).total_seconds()
        assert kept == pytest.approx(24 * 3600, abs=5)
        in_app(client, db.write, "UPDATE idempotency_key SET expires_at = time::now() - 1s")
        second = await _submit(person, "old", image, MODEL="new body is fine now")
        assert second.status_code == 202 and second.json()["jobId"] != first["jobId"]
        in_app(client, db.write, "UPDATE idempotency_key SET expires_at = time::now() - 1s")
        in_app(client, purge_expired, db)
        assert count(client, "idempotency_key") == 0


@pytest.mark.parametrize("bad", [b"", b"x" * 256, b"has space", b"tab\tkey",
                                 "naïve".encode()])
async def test_a_malformed_key_is_refused_naming_the_header(settings, bad):
    async with running_app(settings, idle=True) as client:
        person = await Account.signup(client, "bad@example.com")
        image = await person.upload()
        r = await person.post("/api/templates/video",
                              headers={"Idempotency-Key": bad},
                              json={"templateSlug": "car-commercial", "startKey": image,
                                    "variables": VARS})
        assert r.status_code == 400, r.text
        assert r.json()["field"] == "Idempotency-Key"
        assert count(client, "video_job") == 0


async def test_the_generate_form_replays_with_the_jobs_card(settings):
    """The page's form (htmx) with a key: the replay is the same job's card, and the
    notice about work in progress counts it once."""
    async with running_app(settings, idle=True) as client:
        person = await Account.signup(client, "form@example.com")
        image = await person.upload()
        form = {"templateSlug": "car-commercial", "startKey": image,
                "variables.BRAND": "Aurora", "variables.MODEL": "S1"}
        headers = {"hx-request": "true", **keyed("click-1")}
        first = await person.post("/api/templates/video", data=form, headers=headers)
        assert first.status_code == 202 and "text/html" in first.headers["content-type"]
        (job_id,) = books(client, person.email)["jobs"]
        again = await person.post("/api/templates/video", data=form, headers=headers)
        assert again.status_code == 202 and f'id="job-{job_id}"' in again.text
        assert 'id="toast-progress"' in again.text and "Generating video…" in again.text
        assert books(client, person.email)["jobs"] == [job_id]
        # the same submission as JSON under that key is the same body: the same job
        r = await _submit(person, "click-1", image)
        assert r.status_code == 202 and r.json()["jobId"] == job_id
        other = await person.post("/api/templates/video", headers=headers,
                                  data={**form, "variables.MODEL": "S9"})
        assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"


async def test_the_key_is_documented(client):
    doc = (await client.get("/schema/openapi.json")).json()
    op = doc["paths"]["/api/templates/video"]["post"]
    (param,) = [p for p in op["parameters"] if p["name"] == "Idempotency-Key"]
    assert param["in"] == "header" and param["required"] is False
    assert param["schema"]["maxLength"] == 255
    assert "422" in op["responses"]
    cancel = doc["paths"]["/api/templates/video/cancel"]["post"]["responses"]["409"]
    assert "AlreadyRendered" in str(cancel)


# -- both, across two app processes on one SurrealDB server --------------------------------

@pytest.fixture
def two_processes(surreal_server_url, surreal_db_name, tmp_path):
    from tests.integration.test_multiprocess import Cluster

    cluster = Cluster(surreal_server_url, surreal_db_name, tmp_path)
    try:
        yield cluster, cluster.start(2)
    finally:
        cluster.stop_all()


async def test_retries_and_keys_hold_across_processes(two_processes):
    """Real HTTP, truly concurrent, half the requests to each process (each its own
    memory): eight admin retries of one canceled job make one job, and eight submissions
    under one Idempotency-Key make one job."""
    from tests.integration.test_multiprocess import client, share_cookies

    cluster, (a, b) = two_processes
    async with client(a.url) as ca, client(b.url) as cb:
        person = await Account.signup(ca, "multi@example.com")
        image = await person.upload()
        job_id = (await person.submit(image)).json()["jobId"]
        assert (await person.post("/api/templates/video/cancel",
                                  params={"jobId": job_id})).json()["status"] == "canceled"
        db = await cluster.db()
        try:
            user = await users_db.by_email(db, person.email)
            await users_db.set_admin(db, user.id, True)
        finally:
            await db.close()
        share_cookies(ca, cb)
        people = [person, Account(cb, person.email)]
        answers = await asyncio.gather(*[
            people[i % 2].post(f"/admin/jobs/{job_id}/retry", follow_redirects=False)
            for i in range(8)])
        assert [r.status_code for r in answers] == [303] * 8
        retried = {r.headers["location"].split("?")[0] for r in answers}
        assert len(retried) == 1, retried
        keyed_answers = await asyncio.gather(*[_submit(people[i % 2], "multi", image)
                                               for i in range(8)])
        assert {r.status_code for r in keyed_answers} == {202}
        assert len({r.json()["jobId"] for r in keyed_answers}) == 1
    books = await cluster.books(person.email)
    assert len(books["jobs"]) == 3, books["jobs"]  # the canceled one, its retry, the keyed one
    # held or charged (a job moves from one to the other at once): two jobs' worth, no more
    assert books["reserved"] + 1000 - books["balance"] == 2 * PRICE
