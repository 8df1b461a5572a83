"""A job card's picture (GET /jobs/{id}/thumbnail): the start image while it is in the
library, a neutral placeholder once it is not; only for the job's owner."""

from __future__ import annotations

from tests.helpers import Account
from tests.integration.api_support import running_app


async def test_thumbnail_is_the_start_image_then_a_placeholder(settings):
    async with running_app(settings, idle=True) as client:
        alice = await Account.signup(client, "alice@example.com")
        key = await alice.upload()
        job_id = (await alice.submit(key)).json()["jobId"]
        card = (await alice.get("/jobs")).text
        assert f'src="/jobs/{job_id}/thumbnail?v=s"' in card

        r = await alice.get(f"/jobs/{job_id}/thumbnail", follow_redirects=False)
        assert r.status_code == 302 and r.headers["location"] == f"/media/{key}", r.headers
        assert "private" in r.headers["cache-control"]
        assert (await alice.delete("/api/library", params={"key": key})).status_code in (200, 204)
        r = await alice.get(f"/jobs/{job_id}/thumbnail", follow_redirects=False)
        assert r.headers["location"] == "/static/job-placeholder.svg"
        assert (await alice.get(r.headers["location"])).status_code == 200

        assert (await alice.get("/jobs/0123abcd/thumbnail")).status_code == 404
        await alice.post("/logout")
        assert (await alice.get(f"/jobs/{job_id}/thumbnail")).status_code == 401
