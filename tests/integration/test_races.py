"""Two drivers, webhooks and redeliveries racing over the same finishing jobs: every job
is stored once, filed once and charged once."""

from __future__ import annotations

import asyncio

from litestar.testing import AsyncTestClient

from app.db import jobs as jobs_db
from app.db import users as users_db
from app.db.connection import rid
from app.jobs.driver import Driver
from app.main import create_app
from app.providers.fal import FalProvider
from tests.fakes.fal_server import JobSpec
from tests.helpers import Account, on_app
from tests.integration.test_jobs_fal import fal_settings

JOBS = 8


async def test_two_drivers_and_webhooks_on_the_same_jobs(tmp_path, s3_server, fake_fal):
    fake_fal.reset()
    fake_fal.defaults = JobSpec(queue_time=0.1, run_time=0.4)
    settings = fal_settings(tmp_path, s3_server, public_base_url="https://app.example",
                            allowed_hosts="*", status_interval=0.1, max_active_jobs=JOBS)
    async with AsyncTestClient(create_app(settings), base_url="https://testserver.local") as c:
        services = c.app.state.services
        provider = FalProvider(key="fake", allowed_result_hosts=["127.0.0.1"])  # the fake's
        second = Driver(services.db, services.jobs, provider, services.storage,
                        work_dir=tmp_path / "tmp2", webhook_url=settings.webhook_url,
                        tick=0.05, concurrency=2)
        services.driver.concurrency = 2  # neither driver can take every job alone
        steps = {"first": 0, "second": 0}
        for name, driver in (("first", services.driver), ("second", second)):
            def counting(advance, name=name):
                async def wrapped(job):
                    steps[name] += 1
                    return await advance(job)
                return wrapped
            driver._advance = counting(driver._advance)
        on_app(c, second.start)
        try:
            person = await Account.signup(c, "race@example.com")
            key = await person.upload()
            ids = [(await person.submit(key)).json()["jobId"] for _ in range(JOBS)]

            async def hammer_webhooks():
                """Deliver each finished job's webhook three times, as fal's retries might."""
                done: set[str] = set()
                while len(done) < JOBS:
                    for job_id in ids:
                        job = await jobs_db.get(services.db, job_id)
                        rid = job.provider_request_id
                        if job_id in done or not rid or fake_fal.jobs[rid].state() != "COMPLETED":
                            continue
                        for _ in range(3):
                            msg = fake_fal.build_webhook(rid)
                            r = await c.post("/api/webhooks/fal", headers=msg.headers,
                                             content=msg.body)
                            assert r.status_code == 200
                        done.add(job_id)
                    await asyncio.sleep(0.02)

            try:
                await asyncio.wait_for(hammer_webhooks(), timeout=30)
            except TimeoutError:
                for j in ids:
                    job = await jobs_db.get(services.db, j)
                    print(j, job.status, job.provider_request_id, job.error,
                          job.lease_owner, job.due_at, job.attempts)
                raise
            finals = [await person.wait_status(j, timeout=30) for j in ids]
        finally:
            on_app(c, second.stop)

        assert [f["status"] for f in finals] == ["completed"] * JOBS
        assert steps["first"] > 0 and steps["second"] > 0, steps  # both really took part
        user = await users_db.by_email(services.db, "race@example.com")
        uid = user.id
        assert user.balance == 1000 - 80 * JOBS == await users_db.ledger_sum(services.db, uid)
        assert user.reserved == 0 and user.active_jobs == 0
        charges = await services.db.read_one(
            "SELECT job, count() AS n FROM ledger WHERE owner = $u AND reason = 'video' "
            "GROUP BY job", {"u": rid("user", user.id)})
        assert sorted(r["job"] for r in charges) == sorted(ids)
        assert all(r["n"] == 1 for r in charges)
        items = await services.db.read_one(
            "SELECT VALUE key FROM library WHERE owner = $u AND kind = 'video'",
            {"u": rid("user", user.id)})
        assert len(items) == len(set(items)) == JOBS
        submits = sum(cnt["submit"] for cnt in fake_fal.counts_by_job().values())
        assert submits == JOBS  # leases kept the two drivers off each other's jobs
