"""The job engine through the real fal_client against the fake fal server over HTTPS,
with videos stored in S3 on a moto server."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from litestar.testing import AsyncTestClient

from app.db import users as users_db
from app.main import create_app
from app.settings import Settings
from tests.fakes.fal_server import JobSpec
from tests.helpers import Account


def fal_settings(tmp_path, s3_server, **overrides) -> Settings:
    values = dict(
        data_dir=tmp_path, database_url="mem://", video_provider="fal", fal_key="fake",
        storage="s3", s3_bucket=s3_server.bucket, s3_endpoint_url=s3_server.endpoint_url,
        s3_region="us-east-1", aws_access_key_id="test", aws_secret_access_key="test",
        status_interval=0.2,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def fake(fake_fal):
    fake_fal.reset()
    fake_fal.defaults = JobSpec(queue_time=0.3, run_time=0.6)
    return fake_fal


@pytest.fixture
async def app_client(tmp_path, s3_server, fake):
    async with AsyncTestClient(create_app(fal_settings(tmp_path, s3_server)),
                               base_url="http://testserver.local") as c:
        yield c


@pytest.fixture
async def carol(app_client) -> Account:
    return await Account.signup(app_client, "carol@example.com")


async def _state(client, email):
    services = client.app.state.services
    user = await users_db.by_email(services.db, email)
    uid = user.id
    return user, await users_db.ledger_sum(services.db, uid), uid


async def test_full_path_through_fal_and_s3(carol, fake, s3_server):
    key = await carol.upload()
    r = await carol.submit(key)
    assert r.status_code == 202
    job_id = r.json()["jobId"]
    seen = set()
    for _ in range(200):
        body = (await carol.get("/api/templates/video/status", params={"jobId": job_id})).json()
        seen.add(body["status"])
        if body["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    assert body["status"] == "completed", body
    assert {"pending", "processing"} & seen
    stored = s3_server.client().get_object(Bucket=s3_server.bucket, Key=body["key"])["Body"].read()
    assert hashlib.sha256(stored).digest() == hashlib.sha256(fake.default_video).digest()
    assert body["key"].endswith(f"/library/videos/{job_id}.mp4")
    videos = [i for i in (await carol.get("/api/library")).json() if i["kind"] == "video"]
    assert len(videos) == 1
    user, ledger, _ = await _state(carol.client, carol.email)
    assert user.balance == 1000 - 80 == ledger and user.reserved == 0
    (job,) = [j for j in fake.jobs.values() if j.arguments.get("prompt") and
              j.request_id in fake.counts_by_job()]
    assert "Aurora" in job.arguments["prompt"]
    assert job.arguments["image_url"].startswith(("https://", "http://", "data:"))
    assert fake.count("submit") == 1 and fake.count("result") == 1


async def test_watchers_do_not_add_provider_traffic(carol, fake):
    """Ten tabs polling the status endpoint hard: provider checks are the driver's alone."""
    fake.defaults = JobSpec(queue_time=0.2, run_time=1.5)
    key = await carol.upload()
    job_id = (await carol.submit(key)).json()["jobId"]
    stop = asyncio.Event()

    async def tab():
        while not stop.is_set():
            await carol.get("/api/templates/video/status", params={"jobId": job_id})
            await asyncio.sleep(0.01)

    tabs = [asyncio.create_task(tab()) for _ in range(10)]
    final = await carol.wait_status(job_id)
    stop.set()
    await asyncio.gather(*tabs)
    assert final["status"] == "completed"
    (counts,) = fake.counts_by_job().values()
    # One check per status interval (0.2 s) over a ~1.7 s job, whatever the tabs do.
    assert counts["status"] <= 1.7 / 0.2 + 3, counts


async def test_provider_error_fails_with_fals_message(carol, fake):
    fake.next_jobs(1, error="Image is NSFW, please try another image")
    key = await carol.upload()
    job_id = (await carol.submit(key)).json()["jobId"]
    final = await carol.wait_status(job_id)
    assert final["status"] == "failed"
    assert "NSFW" in final["error"]
    user, ledger, _ = await _state(carol.client, carol.email)
    assert user.balance == 1000 == ledger and user.reserved == 0


@pytest.mark.parametrize("kind", ["submit", "status", "result", "video"])
async def test_transient_5xx_is_retried_to_success(carol, fake, kind):
    fake.fail_next(kind, n=2, status=503)
    key = await carol.upload()
    job_id = (await carol.submit(key)).json()["jobId"]
    final = await carol.wait_status(job_id, timeout=30)
    assert final["status"] == "completed", final
    user, ledger, _ = await _state(carol.client, carol.email)
    assert user.balance == 920 == ledger and user.reserved == 0


async def test_missing_result_video_fails_clearly(carol, fake):
    fake.next_jobs(1, video_404=True)
    key = await carol.upload()
    job_id = (await carol.submit(key)).json()["jobId"]
    final = await carol.wait_status(job_id, timeout=30)
    assert final["status"] == "failed" and final["error"]
    user, _, _ = await _state(carol.client, carol.email)
    assert user.reserved == 0 and user.balance == 1000


async def test_deadline_cancels_at_provider_and_fails(tmp_path, s3_server, fake):
    fake.next_jobs(1, never_complete=True)
    settings = fal_settings(tmp_path, s3_server, job_deadline_seconds=1.0)
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as c:
        dave = await Account.signup(c, "dave@example.com")
        job_id = (await dave.submit(await dave.upload())).json()["jobId"]
        final = await dave.wait_status(job_id, timeout=20)
        assert final["status"] == "failed"
        assert "Timed out" in final["error"]
        assert fake.count("cancel") >= 1
        user, ledger, _ = await _state(c, "dave@example.com")
        assert user.reserved == 0 and user.balance == 1000 == ledger


async def test_cancel_reaches_the_provider(carol, fake):
    fake.next_jobs(1, never_complete=True)
    key = await carol.upload()
    job_id = (await carol.submit(key)).json()["jobId"]
    for _ in range(100):
        if fake.jobs:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    r = await carol.post("/api/templates/video/cancel", params={"jobId": job_id})
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    for _ in range(100):
        if fake.count("cancel"):
            break
        await asyncio.sleep(0.05)
    assert fake.count("cancel") == 1
    assert (await carol.me())["available"] == 1000


async def test_webhook_completes_without_polling(tmp_path, s3_server, fake):
    """With PUBLIC_BASE_URL a job is driven by fal's signed webhook; a redelivery, a forged
    call and an altered body change nothing."""
    fake.defaults = JobSpec(queue_time=0.1, run_time=0.3)
    settings = fal_settings(tmp_path, s3_server, public_base_url="https://app.example",
                            allowed_hosts="*", status_interval=None)
    # https: with an https PUBLIC_BASE_URL the session and CSRF cookies are Secure.
    async with AsyncTestClient(create_app(settings), base_url="https://testserver.local") as c:
        erin = await Account.signup(c, "erin@example.com")
        job_id = (await erin.submit(await erin.upload())).json()["jobId"]
        from app.db import jobs as jobs_db

        request_id = None
        for _ in range(100):
            job = await jobs_db.get(c.app.state.services.db, job_id)
            request_id = job.provider_request_id
            if request_id and fake.jobs[request_id].state() == "COMPLETED":
                break
            await asyncio.sleep(0.05)
        assert fake.jobs[request_id].webhook_url == "https://app.example/api/webhooks/fal"
        forged = fake.build_webhook(request_id, forged=True)
        r = await c.post("/api/webhooks/fal", headers=forged.headers, content=forged.body)
        assert r.status_code == 401
        await asyncio.sleep(0.3)
        assert (await erin.wait_status(job_id, timeout=0.1))["status"] == "processing"

        msg = fake.build_webhook(request_id)
        r = await c.post("/api/webhooks/fal", headers=msg.headers, content=msg.body)
        assert r.status_code == 200
        final = await erin.wait_status(job_id, timeout=10)
        assert final["status"] == "completed"
        again = fake.build_webhook(request_id)
        r = await c.post("/api/webhooks/fal", headers=again.headers, content=again.body)
        assert r.status_code == 200
        await asyncio.sleep(0.3)
        counts = fake.counts_by_job()[request_id]
        assert counts["status"] == 0  # the safety check (30 s) never came due
        assert counts["submit"] == 1 and counts["result"] == 1
        user, ledger, _ = await _state(c, "erin@example.com")
        assert user.balance == 920 == ledger
        videos = [i for i in (await erin.get("/api/library")).json() if i["kind"] == "video"]
        assert len(videos) == 1
