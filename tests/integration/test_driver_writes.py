"""Database writes per job: the driver writes once per step (the embedded store's memory
grows with every write, and each write is CPU on the one event loop; docs/BENCHMARKS.md §5).

One job through the real fal_client and the fake fal, every `db.write` that names the job
counted: the submission's create, the driver's claims (shared by every job claimed in the
same round), and the steps' own writes."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from app.main import create_app
from tests.fakes.fal_server import JobSpec
from tests.helpers import Account
from tests.integration.test_jobs_fal import fal_settings


@pytest.fixture
async def counted(tmp_path, s3_server, fake_fal):
    """The app (status checks every 0.2 s) with each database write recorded."""
    fake_fal.reset()
    # A log line that never changes: after the first check in processing, checks see
    # nothing new, the case that used to cost a counter write and a release.
    fake_fal.defaults = JobSpec(queue_time=0.2, run_time=1.2, logs=("Generating frames",))
    async with AsyncTestClient(create_app(fal_settings(tmp_path, s3_server)),
                               base_url="http://testserver.local") as client:
        db = client.app.state.services.db
        writes: list[tuple[str, str]] = []
        original = db.write

        async def write(sql, vars=None):
            writes.append((sql, repr(vars)))
            return await original(sql, vars)

        db.write = write
        yield client, writes


async def test_one_write_per_step(counted):
    client, writes = counted
    dana = await Account.signup(client, "dana@example.com")
    job_id = (await dana.submit(await dana.upload())).json()["jobId"]
    assert (await dana.wait_status(job_id))["status"] == "completed"

    mine = [sql for sql, vars in writes if job_id in vars]
    claims = [s for s in mine if "SET lease_owner = $owner" in s]
    renewals = [s for s in mine if "SET lease_until = time::now()" in s]
    releases = [s for s in mine if "checks = $checks ?? checks" in s]
    steps = [s for s in mine if s not in claims and s not in renewals]
    # The create, then one write per step (a transition that hands the lease back, or a
    # release carrying the check's count), except the last step, which moves the job to
    # finalizing and then to completed.
    assert len(steps) == 1 + len(claims) + 1, (len(mine), len(claims), len(steps))
    assert len(releases) >= 2  # unchanged checks happened, each one write
    assert not [s for s in steps if "MERGE $fields WHERE lease_owner = $lease" in s]
