"""Batches over HTTP: all-or-nothing reservation (also racing single jobs and other batches),
row validation that names the row and field and creates nothing, cancel and retry-failed
(also called concurrently), the streamed zip of exactly the finished videos, and the
driver's fair sharing of slots between people."""

from __future__ import annotations

import asyncio
import io
import tracemalloc
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from litestar.testing import AsyncTestClient

from app.db import jobs as jobs_db
from app.db.records import DueJob
from app.jobs import fairness
from app.jobs.states import Status
from app.main import create_app
from app.settings import Settings
from tests.fakes.fal_server import JobSpec
from tests.fakes.live_server import live_account
from tests.helpers import Account
from tests.integration.api_support import (
    count,
    image_bytes,
    in_app,
    sharing,
    user_row,
)

PRICE = 80  # car-commercial


def rows(*models: str) -> list[dict]:
    return [{"variables": {"BRAND": "Aurora", "MODEL": m}} for m in models]


def batch(key: str, models=("S1", "S2", "S3"), **over) -> dict:
    return {"templateSlug": "car-commercial", "startKey": key, "rows": rows(*models), **over}


@pytest.fixture
async def alice(idle) -> Account:
    return await Account.signup(idle, "alice@example.com")


@pytest.fixture
async def image(alice) -> str:
    return await alice.upload(image_bytes())


async def assert_nothing_made(account: Account, client) -> None:
    assert count(client, "batch") == 0 and count(client, "video_job") == 0
    user = user_row(client, account.email)
    assert user.reserved == 0 and user.balance == 1000
    assert (await account.get("/api/batches")).json()["batches"] == []


# -- submitting ----------------------------------------------------------------------------

async def test_a_batch_reserves_every_row_and_reads_back(idle, alice, image):
    other = await alice.upload(image_bytes(color=(10, 200, 10)))
    body = batch(image, name="Spring spots")
    body["rows"][2]["startKey"] = other
    r = await alice.post("/api/batches", json=body)
    assert r.status_code == 202, r.text
    made = r.json()
    assert made["status"] == "pending" and made["credits"] == 3 * PRICE
    assert len(made["jobIds"]) == 3 and len(set(made["jobIds"])) == 3
    me = await alice.me()
    assert me["credits"] == 1000 and me["available"] == 1000 - 3 * PRICE
    # the rows don't count against the cap on single submissions
    assert user_row(idle, alice.email).active_jobs == 0

    shown = (await alice.get(f"/api/batches/{made['batchId']}")).json()
    assert shown["name"] == "Spring spots" and shown["template"] == "car-commercial"
    assert (shown["status"], shown["total"], shown["waiting"], shown["charged"]) == (
        "pending", 3, 3, 0)
    assert [j["jobId"] for j in shown["jobs"]] == made["jobIds"]
    assert [j["variables"]["MODEL"] for j in shown["jobs"]] == ["S1", "S2", "S3"]
    assert [j["startKey"] for j in shown["jobs"]] == [image, image, other]
    assert [j["row"] for j in shown["jobs"]] == [0, 1, 2]
    # each row is a normal job: the single-job routes work on it
    status = (await alice.get("/api/templates/video/status",
                              params={"jobId": made["jobIds"][1]})).json()
    assert status["status"] == "pending"
    listed = (await alice.get("/api/batches")).json()["batches"]
    assert [b["batchId"] for b in listed] == [made["batchId"]] and "jobs" not in listed[0]


@pytest.mark.parametrize("change, field, row, status", [
    (lambda b: b["rows"][1]["variables"].pop("MODEL"), "rows[1].variables.MODEL", 2, 400),
    (lambda b: b["rows"][2]["variables"].update(COLOR="red"), "rows[2].variables.COLOR", 3, 400),
    (lambda b: b["rows"][0]["variables"].update(BRAND="x" * 500), "rows[0].variables.BRAND",
     1, 400),
    (lambda b: b["rows"].__setitem__(1, "S2"), "rows[1]", 2, 400),
    (lambda b: b["rows"][2].update(startKey="users/nobody/library/x.png"),
     "rows[2].startKey", 3, 404),
    (lambda b: b.pop("startKey"), "rows[0].startKey", 1, 400),
    (lambda b: b.update(rows=[]), "rows", None, 400),
    (lambda b: b.update(rows=rows(*[f"M{i}" for i in range(101)])), "rows", None, 400),
    (lambda b: b.update(name=["x"]), "name", None, 400),
    (lambda b: b.update(templateSlug="nope"), "templateSlug", None, 404),
    (lambda b: b.update(startKey="users/nobody/library/x.png"), "startKey", None, 404),
    # the batch's own start image is checked even when every row names its own
    (lambda b: [r.update(startKey=b["startKey"]) for r in b["rows"]]
     and b.update(startKey="users/nobody/library/x.png"), "startKey", None, 404),
])
async def test_a_bad_row_is_refused_by_number_and_field_and_nothing_is_made(
        idle, alice, image, change, field, row, status):
    body = batch(image)
    change(body)
    r = await alice.post("/api/batches", json=body)
    assert r.status_code == status, r.text
    answer = r.json()
    assert answer["field"] == field and answer["message"]
    assert answer.get("row") == row
    if row:
        assert answer["message"].startswith(f"Row {row}")
    await assert_nothing_made(alice, idle)


async def test_not_json_is_a_400_naming_the_body(idle, alice):
    r = await alice.post("/api/batches", content=b"rows=1",
                         headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "body"


async def test_a_batch_that_does_not_fit_is_402_and_makes_nothing(idle, alice, image):
    r = await alice.post("/api/batches", json=batch(image, [f"M{i}" for i in range(13)]))
    assert r.status_code == 402, r.text
    assert r.json() == {"error": "insufficient_credits", "required": 13 * PRICE,
                        "available": 1000, "message": "Not enough credits for this template"}
    await assert_nothing_made(alice, idle)


async def test_concurrent_batches_and_single_jobs_never_overspend(idle, alice, image):
    """1000 credits: a 12-row batch (960) fits, and so does a single job (80), but no two of
    these four together: exactly one is accepted, whatever the interleaving."""
    async with sharing(idle) as c2, sharing(idle) as c3, sharing(idle) as c4:
        clients = [Account(c, alice.email) for c in (c2, c3, c4)]
        for c in (c2, c3, c4):
            c.cookies = alice.client.cookies
        twelve = [f"M{i}" for i in range(12)]
        answers = await asyncio.gather(
            alice.post("/api/batches", json=batch(image, twelve)),
            clients[0].post("/api/batches", json=batch(image, twelve)),
            clients[1].submit(image), clients[2].submit(image))
    codes = sorted(a.status_code for a in answers)
    user = user_row(idle, alice.email)
    if codes == [202, 402, 402, 402]:
        winner = next(a for a in answers if a.status_code == 202).json()
        assert user.reserved == winner["credits"]
    else:  # the two single jobs both fit (160) when they win before either batch
        assert codes == [202, 202, 402, 402] and user.reserved == 2 * PRICE
    assert user.balance == 1000 and user.reserved <= 1000


# -- cancel and retry ----------------------------------------------------------------------

async def test_cancel_cancels_every_row_once_and_releases_the_credits(idle, alice, image):
    made = (await alice.post("/api/batches", json=batch(image))).json()
    answers = await asyncio.gather(*[alice.post(f"/api/batches/{made['batchId']}/cancel")
                                     for _ in range(4)])
    assert {a.status_code for a in answers} == {200}
    shown = answers[-1].json()
    assert (shown["status"], shown["canceled"], shown["charged"]) == ("canceled", 3, 0)
    user = user_row(idle, alice.email)
    assert user.reserved == 0 and user.balance == 1000
    assert count(idle, "ledger") == 1  # the welcome credits only


async def test_retry_failed_makes_one_new_job_per_failed_row_once(idle, alice, image):
    made = (await alice.post("/api/batches", json=batch(image))).json()
    jobs = idle.app.state.services.jobs
    for job_id in made["jobIds"][:2]:  # two rows fail, the third stays pending
        assert in_app(idle, lambda j=job_id: jobs.move(
            j, Status.FAILED, fields={"error": "The provider refused"}, reason="test"))
    answers = await asyncio.gather(*[alice.post(f"/api/batches/{made['batchId']}/retry-failed")
                                     for _ in range(5)])
    assert {a.status_code for a in answers} == {202}
    retried = [a.json() for a in answers if a.json()["jobIds"]]
    assert len(retried) == 1 and len(retried[0]["jobIds"]) == 2
    assert retried[0]["credits"] == 2 * PRICE
    shown = (await alice.get(f"/api/batches/{made['batchId']}")).json()
    ids = [j["jobId"] for j in shown["jobs"]]
    assert ids[:2] == retried[0]["jobIds"] and ids[2] == made["jobIds"][2]
    assert [j["status"] for j in shown["jobs"]] == ["pending"] * 3
    assert [j["variables"]["MODEL"] for j in shown["jobs"]] == ["S1", "S2", "S3"]
    assert count(idle, "video_job") == 5
    assert user_row(idle, alice.email).reserved == 3 * PRICE
    again = await alice.post(f"/api/batches/{made['batchId']}/retry-failed")
    assert again.json()["jobIds"] == [] and count(idle, "video_job") == 5


async def test_someone_elses_batch_is_404_everywhere(idle, alice, image):
    made = (await alice.post("/api/batches", json=batch(image))).json()
    async with sharing(idle) as other:
        bob = await Account.signup(other, "bob@example.com")
        for method, path in (("get", ""), ("post", "/cancel"), ("post", "/retry-failed"),
                             ("get", "/download")):
            r = await getattr(bob, method)(f"/api/batches/{made['batchId']}{path}")
            assert r.status_code == 404 and r.json()["field"] == "batchId", (path, r.text)
    assert (await alice.get(f"/api/batches/{made['batchId']}")).json()["waiting"] == 3


# -- the zip ----------------------------------------------------------------------------------

async def _finish(services, job_id: str, data: bytes) -> None:
    """Complete a job as the driver would: the video stored, the job charged and filed."""
    job = await jobs_db.get(services.db, job_id)
    key = f"users/{job.owner_id}/library/videos/{job_id}.mp4"
    await services.storage.put_bytes(key, data, "video/mp4")
    library = {"key": key, "kind": "video", "content_type": "video/mp4",
               "size": len(data), "job": job_id, "name": "v.mp4"}
    for to, fields in [(Status.QUEUED, {"provider_request_id": f"req-{job_id}"}),
                       (Status.PROCESSING, None), (Status.FINALIZING, None),
                       (Status.COMPLETED, {"result_key": key, "result_size": len(data)})]:
        assert await services.jobs.move(job_id, to, fields=fields, reason="test",
                                        library=library if to == Status.COMPLETED else None)


def finish(client, job_id: str, data: bytes) -> None:
    in_app(client, _finish, client.app.state.services, job_id, data)


async def test_the_zip_holds_exactly_the_finished_videos_named_by_row(idle, alice, image):
    made = (await alice.post("/api/batches", json=batch(image, ["GT Coupé", "S/2", "S3"]))).json()
    assert (await alice.get(f"/api/batches/{made['batchId']}/download")).status_code == 409
    videos = {made["jobIds"][0]: b"first video " * 1000, made["jobIds"][2]: b"third" * 3000}
    for job_id, data in videos.items():
        finish(idle, job_id, data)
    await alice.post(f"/api/batches/{made['batchId']}/cancel")  # the middle row
    r = await alice.get(f"/api/batches/{made['batchId']}/download")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert "attachment" in r.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert z.testzip() is None
        assert z.namelist() == ["01-aurora-gt-coup.mp4", "03-aurora-s3.mp4"]
        assert z.read("01-aurora-gt-coup.mp4") == videos[made["jobIds"][0]]
        assert z.read("03-aurora-s3.mp4") == videos[made["jobIds"][2]]
    shown = (await alice.get(f"/api/batches/{made['batchId']}")).json()
    assert (shown["status"], shown["completed"], shown["charged"]) == ("partial", 2, 2 * PRICE)


async def test_the_zip_streams_in_constant_memory(tmp_path, live_server_factory):
    """The peak of Python memory (server and client, one process) while a zip is sent
    over a real socket does not grow with the number of videos (8 vs 24 of 2 MB each)."""
    server = live_server_factory(Settings(data_dir=tmp_path, database_url="mem://",
                                          signup_credits=100_000))
    server.run(server.services.driver.stop())  # the test finishes the jobs itself
    peaks = {}
    async with live_account(server, "zip@example.com") as alice:
        key = await alice.upload(image_bytes())
        for n in (8, 24):
            made = (await alice.post("/api/batches", json=batch(
                key, [f"M{n}-{i}" for i in range(n)]))).json()
            for i, job_id in enumerate(made["jobIds"]):
                server.run(_finish(server.services, job_id, bytes([i]) * (2 * 1024 * 1024)))
            tracemalloc.start()
            size = 0
            async with alice.client.stream(
                    "GET", f"/api/batches/{made['batchId']}/download") as r:
                assert r.status_code == 200
                async for chunk in r.aiter_bytes():
                    size += len(chunk)
            peaks[n] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert size > n * 2 * 1024 * 1024
    assert peaks[24] < 1.5 * peaks[8] + 1024 * 1024, peaks  # not 3 times as much
    assert peaks[24] < 8 * 1024 * 1024, peaks  # far below the 48 MB of videos


# -- fair driver slots ----------------------------------------------------------------------

def test_pick_shares_slots_fairly_and_caps_each_person():
    t = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i) for i in range(200)]
    alice = [DueJob(id=f"a{i}", owner_id="alice", batch="b", due_at=t[i]) for i in range(100)]
    bob = [DueJob(id="b0", owner_id="bob", due_at=t[150])]
    carol = [DueJob(id="c0", owner_id="carol", batch="c", due_at=t[160]),
             DueJob(id="c1", owner_id="carol", due_at=t[170])]
    picked = [j.id for j in fairness.pick(alice + bob + carol, {"alice": 1}, 3, 10)]
    # those with nothing running go first (bob waited longer than carol); carol's single
    # job goes before her batch row; alice, who has one running, stops at her cap of 3
    assert picked == ["b0", "c1", "a0", "c0", "a1"]
    assert [j.id for j in fairness.pick(alice + bob, {}, 5, 1)] == ["a0"]
    assert [j.id for j in fairness.pick(alice + bob, {"alice": 5}, 5, 10)] == ["b0"]


async def test_a_second_persons_job_starts_before_a_batchs_waiting_rows(
        tmp_path, s3_server, fake_fal):
    """MAX_ACTIVE_JOBS=2: alice's 6-row batch runs two rows at a time, the rest pending; bob's
    single job, submitted after, is handed to fal while alice's rows still wait."""
    fake_fal.reset()
    fake_fal.defaults = JobSpec(queue_time=0.2, never_complete=True)
    settings = Settings(
        data_dir=tmp_path, database_url="mem://", video_provider="fal", fal_key="fake",
        storage="s3", s3_bucket=s3_server.bucket, s3_endpoint_url=s3_server.endpoint_url,
        s3_region="us-east-1", aws_access_key_id="test", aws_secret_access_key="test",
        status_interval=0.2, max_active_jobs=2)
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as c:
        alice = await Account.signup(c, "alice@example.com")
        key = await alice.upload(image_bytes())
        made = (await alice.post("/api/batches", json=batch(
            key, [f"M{i}" for i in range(6)]))).json()
        async with sharing(c) as other:
            bob = await Account.signup(other, "bob@example.com")
            bob_job = (await bob.submit(await bob.upload(image_bytes()))).json()["jobId"]
            db = c.app.state.services.db
            for _ in range(100):
                bobs = in_app(c, jobs_db.get, db, bob_job)
                if bobs.provider_request_id:
                    break
                await asyncio.sleep(0.1)
            assert bobs.provider_request_id, bobs
            rows_now = [in_app(c, jobs_db.get, db, j) for j in made["jobIds"]]
            started = [j for j in rows_now if j.provider_request_id]
            assert len(started) == 2, [j.status for j in rows_now]  # alice's cap
            assert [j.status for j in rows_now].count("pending") == 4
            assert [j.row for j in started] == [0, 1]  # her rows run in order
            await asyncio.sleep(1.0)  # and stay at the cap while her two run
            rows_now = [in_app(c, jobs_db.get, db, j) for j in made["jobIds"]]
            assert sum(1 for j in rows_now if j.provider_request_id) == 2
            # a canceled row frees its slot: the next row starts
            await alice.post("/api/templates/video/cancel", params={"jobId": started[0].id})
            for _ in range(100):
                rows_now = [in_app(c, jobs_db.get, db, j) for j in made["jobIds"]]
                if rows_now[2].provider_request_id:
                    break
                await asyncio.sleep(0.1)
            assert rows_now[2].provider_request_id
            assert not rows_now[3].provider_request_id
            await alice.post(f"/api/batches/{made['batchId']}/cancel")
            await bob.post("/api/templates/video/cancel", params={"jobId": bob_job})


async def test_the_account_history_folds_a_batchs_charges_under_its_name(idle, alice, image):
    made = (await alice.post("/api/batches", json=batch(image, name="Spring spots"))).json()
    for job_id in made["jobIds"][:2]:
        finish(idle, job_id, b"video")
    page = (await alice.get("/account", headers={"accept": "text/html"})).text
    assert page.count("Batch: Spring spots · 2 videos") == 1
    assert f"−{2 * PRICE}" in page  # one row for both charges
    for job_id in made["jobIds"][:2]:
        assert f"/jobs?job={job_id}" in page  # each charge still links to its job
    assert "Aurora · S1" in page and "Aurora · S2" in page


async def test_retry_failed_that_does_not_fit_is_402_and_a_toast_for_the_page(idle, alice, image):
    made = (await alice.post("/api/batches", json=batch(
        image, [f"M{i}" for i in range(12)]))).json()
    jobs = idle.app.state.services.jobs
    assert in_app(idle, lambda: jobs.move(made["jobIds"][0], Status.FAILED,
                                          fields={"error": "x"}, reason="test"))
    assert (await alice.submit(image)).status_code == 202  # 40 credits left
    url = f"/api/batches/{made['batchId']}/retry-failed"
    r = await alice.post(url)
    assert r.status_code == 402 and r.json()["required"] == PRICE
    r = await alice.post(url, headers={"hx-request": "true"})
    assert r.status_code == 200 and r.headers["x-refused-status"] == "402"
    assert r.headers["hx-reswap"] == "none" and "Not enough credits" in r.json()["message"]
    assert count(idle, "video_job") == 13


async def test_the_notice_about_work_in_progress_names_the_batch(idle, alice, image):
    made = (await alice.post("/api/batches", json=batch(image, name="Spring spots"))).json()
    assert (await alice.submit(image)).status_code == 202  # and one job on its own
    notifier = idle.app.state.services.notifier
    uid = user_row(idle, alice.email).id
    notice = in_app(idle, notifier.progress_event, uid).data
    assert "4 videos generating" in notice and "Spring spots: 3 of 3 to go" in notice
    jobs = idle.app.state.services.jobs
    assert in_app(idle, lambda: jobs.move(made["jobIds"][0], Status.CANCELED, reason="test"))
    notice = in_app(idle, notifier.progress_event, uid).data
    assert "3 videos generating" in notice and "Spring spots: 2 of 3 to go" in notice
