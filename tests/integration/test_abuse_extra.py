"""Abuse cases the other HTTP suites (test_auth, test_csrf, test_library_api, test_submit_api,
test_xss) leave out: fal webhooks that are replayed (after the 5-minute window, or inside it
to the same or another process), whose body was altered, or that are signed for another fal
account than FAL_USER_ID, sent through the real route; the server-side fetch of a result
video, which only goes to https URLs on the configured hosts; and the event stream, which
carries only the signed-in person's own events, whatever the request says.
With no hosts configured, the hosts are fal's media CDN, and a redirect is followed only to
an allowed host.

Each test fails when its protection is removed: the replayed or altered webhook would mark
the job done (or, replayed inside its window, note a second delivery), the other account's
webhook would be accepted, the video would be fetched from the wrong place, the stream would
show another person's job."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager

import httpx
import pytest
from litestar.testing import AsyncTestClient

from app.db import jobs as jobs_db
from app.db.connection import rid
from app.main import create_app
from app.providers.base import ProviderError
from app.providers.fal import FalProvider
from tests.crashkit import Browserless, EventStreamReader, ServerProcess
from tests.fakes.fal_server import JobSpec
from tests.helpers import Account, png_bytes
from tests.integration.api_support import in_app
from tests.integration.test_jobs_fal import fal_settings


@pytest.fixture
def fake(fake_fal):
    fake_fal.reset()
    fake_fal.defaults = JobSpec(queue_time=0.2, run_time=0.4)
    return fake_fal


# -- webhooks: replayed after 5 minutes, altered body -------------------------------------

@pytest.fixture
async def webhook_app(tmp_path, s3_server, fake):
    """The app with webhooks on (no periodic polling: the first safety check is 30 s away)
    and one submitted job that fal never finishes by itself, so only a webhook can move it."""
    async with hooked_app(tmp_path, s3_server, fake) as app:
        yield app


@asynccontextmanager
async def hooked_app(tmp_path, s3_server, fake, **overrides):
    fake.next_jobs(1, never_complete=True)
    settings = fal_settings(tmp_path, s3_server, public_base_url="https://app.example",
                            allowed_hosts="*", status_interval=None, **overrides)
    async with AsyncTestClient(create_app(settings), base_url="https://testserver.local") as c:
        person = await Account.signup(c, "hooks@example.com")
        job_id = (await person.submit(await person.upload())).json()["jobId"]
        db = c.app.state.services.db
        request_id = None
        for _ in range(100):
            # on the app's loop: a server (ws://) connection belongs to it
            request_id = in_app(c, jobs_db.get, db, job_id).provider_request_id
            if request_id:
                break
            await asyncio.sleep(0.05)
        assert request_id, "the job was never submitted"
        yield c, job_id, request_id


async def _job(client, job_id):
    return await jobs_db.get(client.app.state.services.db, job_id)


async def _post(client, msg):
    return await client.post("/api/webhooks/fal", headers=msg.headers, content=msg.body)


async def test_a_webhook_replayed_after_five_minutes_changes_nothing(webhook_app, fake):
    client, job_id, request_id = webhook_app
    before = await _job(client, job_id)
    # Genuinely signed by fal's key, but stamped 5 min 1 s ago (or as far ahead).
    for skew in (-301, 301, -3600):
        msg = fake.build_webhook(request_id, timestamp=int(time.time()) + skew)
        r = await _post(client, msg)
        assert r.status_code == 401, (skew, r.text)
        assert r.json()["error"] == "invalid_signature"
    after = await _job(client, job_id)
    assert after.provider_done is False and after.due_at == before.due_at
    assert after.status == before.status
    # the control: the same message stamped now is accepted and makes the job due
    r = await _post(client, fake.build_webhook(request_id, timestamp=int(time.time()) - 60))
    assert r.status_code == 200
    assert (await _job(client, job_id)).provider_done is True


async def test_a_webhook_with_an_altered_body_changes_nothing(webhook_app, fake):
    client, job_id, request_id = webhook_app
    genuine = fake.build_webhook(request_id)
    data = json.loads(genuine.body)
    altered_bodies = [
        json.dumps({**data, "status": "ERROR", "error": "altered"}).encode(),
        genuine.body.replace(b'"status": "OK"', b'"status":"OK"'),  # one byte less
        genuine.body + b" ",
        json.dumps({**data, "request_id": "someone-elses"}).encode(),
    ]
    for body in altered_bodies:
        assert body != genuine.body
        r = await client.post("/api/webhooks/fal", headers=genuine.headers, content=body)
        assert r.status_code == 401, (body[:80], r.text)
    # headers naming another request id over the genuine body: the signature covers it too
    other = {**genuine.headers, "x-fal-webhook-request-id": "0" * 36}
    r = await client.post("/api/webhooks/fal", headers=other, content=genuine.body)
    assert r.status_code == 401
    assert (await _job(client, job_id)).provider_done is False
    r = await _post(client, genuine)  # the control
    assert r.status_code == 200
    assert (await _job(client, job_id)).provider_done is True


# -- webhooks: replayed inside the window, to this process or another; another fal account --

WEBHOOK_NOTE = "fal's webhook: the render finished"


def _deliveries(client, job_id) -> int:
    """Deliveries the job's timeline records (one per webhook accepted)."""
    events = in_app(client, jobs_db.timeline, client.app.state.services.db, job_id)
    return sum(e.reason == WEBHOOK_NOTE for e in events)


def _charged(client, email: str) -> int:
    rows = in_app(client, client.app.state.services.db.read_one,
                  "SELECT VALUE balance FROM user WHERE email = $e", {"e": email})
    return 1000 - rows[0]


async def test_a_webhook_replayed_inside_its_window_is_answered_and_does_nothing(
        webhook_app, fake):
    client, job_id, request_id = webhook_app
    db = client.app.state.services.db
    fake.complete_now(request_id)
    fake.delay_next("video", 2.0)  # the job stays active (finalizing) while it is replayed
    genuine = fake.build_webhook(request_id)
    r = await _post(client, genuine)
    assert (r.status_code, r.json()) == (200, {"ok": True})
    assert _deliveries(client, job_id) == 1
    seen = await db.read_one("SELECT * FROM webhook_seen")
    for msg in (genuine, genuine, fake.build_webhook(request_id)):  # replays, and a resend
        r = await _post(client, msg)
        assert (r.status_code, r.json()) == (200, {"ok": True, "replay": True})
    assert (await _job(client, job_id)).status in ("queued", "processing", "finalizing")
    assert _deliveries(client, job_id) == 1  # nothing noted, nothing changed
    assert await db.read_one("SELECT * FROM webhook_seen") == seen
    final = await Account(client, "hooks@example.com").wait_status(job_id, timeout=20)
    assert final["status"] == "completed"
    assert _deliveries(client, job_id) == 1 and _charged(client, "hooks@example.com") == 80


async def test_a_webhook_for_another_fal_account_is_refused(tmp_path, s3_server, fake):
    """FAL_USER_ID set: a call genuinely signed by fal, but for another fal user (anyone
    with a fal key can aim their jobs' webhooks here), is refused and changes nothing."""
    async with hooked_app(tmp_path, s3_server, fake, fal_user_id="acct-ours") as app:
        client, job_id, request_id = app
        r = await _post(client, fake.build_webhook(request_id))  # signed for "fake-user"
        assert r.status_code == 403, r.text
        assert r.json()["error"] == "wrong_user"
        job = await _job(client, job_id)
        assert job.provider_done is False and job.status in ("queued", "processing")
        db = client.app.state.services.db
        assert _deliveries(client, job_id) == 0
        assert await db.read_one("SELECT * FROM webhook_seen") == []
    # the control: FAL_USER_ID naming the account that signed it
    async with hooked_app(tmp_path, s3_server, fake, fal_user_id="fake-user") as app:
        client, job_id, request_id = app
        assert (await _post(client, fake.build_webhook(request_id))).status_code == 200
        assert (await _job(client, job_id)).provider_done is True


async def test_a_cancel_after_the_webhook_is_refused_and_the_job_is_charged(webhook_app, fake):
    client, job_id, request_id = webhook_app
    fake.complete_now(request_id)
    fake.delay_next("video", 2.0)
    assert (await _post(client, fake.build_webhook(request_id))).status_code == 200
    person = Account(client, "hooks@example.com")
    r = await person.post("/api/templates/video/cancel", params={"jobId": job_id})
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "already_rendered"
    assert (await person.wait_status(job_id, timeout=20))["status"] == "completed"
    assert _charged(client, person.email) == 80


async def test_a_rendered_job_past_its_deadline_still_completes(webhook_app, fake):
    """fal finished and said so before the deadline check ran: the render is paid for, so
    the job is saved and charged, not canceled at fal and failed."""
    client, job_id, request_id = webhook_app
    await client.app.state.services.db.write(
        "UPDATE $j SET deadline_at = time::now() - 1s", {"j": rid("video_job", job_id)})
    fake.complete_now(request_id)
    assert (await _post(client, fake.build_webhook(request_id))).status_code == 200
    person = Account(client, "hooks@example.com")
    assert (await person.wait_status(job_id, timeout=20))["status"] == "completed"
    assert fake.count("cancel", request_id) == 0
    assert _charged(client, person.email) == 80


async def test_a_webhook_replayed_to_another_process_does_nothing(
        tmp_path, s3_server, fake, surreal_server_url, surreal_db_name):
    """Two app processes (each its own memory) on one SurrealDB server: a webhook accepted
    by one and replayed to the other is caught there, from the database."""
    shared = dict(database_url=surreal_server_url, surrealdb_user="root",
                  surrealdb_pass="root", surrealdb_db=surreal_db_name)
    async with hooked_app(tmp_path, s3_server, fake, **shared) as (first, job_id, request_id):
        settings = fal_settings(tmp_path, s3_server, public_base_url="https://app.example",
                                allowed_hosts="*", status_interval=None, **shared)
        async with AsyncTestClient(create_app(settings),
                                   base_url="https://testserver.local") as second:
            fake.complete_now(request_id)
            fake.delay_next("video", 2.0)
            msg = fake.build_webhook(request_id)
            r = await _post(first, msg)
            assert (r.status_code, r.json()) == (200, {"ok": True})
            r = await _post(second, msg)
            assert (r.status_code, r.json()) == (200, {"ok": True, "replay": True})
            assert _deliveries(first, job_id) == 1
            person = Account(first, "hooks@example.com")
            assert (await person.wait_status(job_id, timeout=30))["status"] == "completed"
            assert _deliveries(first, job_id) == 1
            assert _charged(first, person.email) == 80


# -- the result video is fetched only over https from the configured hosts ----------------

async def _run_one_job(tmp_path, s3_server, **overrides) -> dict:
    settings = fal_settings(tmp_path, s3_server, **overrides)
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as c:
        person = await Account.signup(c, "fetch@example.com")
        job_id = (await person.submit(await person.upload())).json()["jobId"]
        final = await person.wait_status(job_id, timeout=30)
        final["available"] = (await person.me())["available"]
        return final


async def test_a_result_on_a_host_not_configured_is_not_fetched(tmp_path, s3_server, fake):
    final = await _run_one_job(tmp_path, s3_server, allowed_result_hosts="fal.media,v3.fal.media")
    assert final["status"] == "failed"
    assert final["error"] == "refusing to download the video from 127.0.0.1"
    assert fake.count("result") >= 1 and fake.count("video") == 0  # never requested
    assert final["available"] == 1000  # nothing charged


async def test_a_result_over_plain_http_is_not_fetched(tmp_path, s3_server, fake):
    # fal's answer names an http URL on the (configured) media host
    fake.next_jobs(1, video_url=f"http://127.0.0.1:{fake.port}/_media/x/output.mp4")
    final = await _run_one_job(tmp_path, s3_server, allowed_result_hosts="127.0.0.1")
    assert final["status"] == "failed"
    assert final["error"] == "refusing to download the video over http: 127.0.0.1"
    assert fake.count("video") == 0


async def test_a_result_on_a_configured_host_over_https_is_fetched(tmp_path, s3_server, fake):
    """The control for the two above: same set-up, the host is in the list."""
    final = await _run_one_job(tmp_path, s3_server, allowed_result_hosts="fal.media,127.0.0.1")
    assert final["status"] == "completed", final
    assert fake.count("video") == 1


async def test_with_no_hosts_configured_only_fals_media_hosts_are_fetched(
        tmp_path, s3_server, fake):
    """ALLOWED_RESULT_HOSTS unset (the fake's environment names its own host; not here):
    a result anywhere but fal's CDN is refused before a byte is requested."""
    final = await _run_one_job(tmp_path, s3_server, allowed_result_hosts=None)
    assert final["status"] == "failed"
    assert final["error"] == "refusing to download the video from 127.0.0.1"
    assert fake.count("result") >= 1 and fake.count("video") == 0
    assert final["available"] == 1000


async def test_a_redirect_to_another_host_is_not_followed(tmp_path, s3_server, fake):
    # the video URL is on the allowed host and answers 302 to the same file on another host
    fake.next_jobs(1, video_redirect_host="localhost")
    final = await _run_one_job(tmp_path, s3_server, allowed_result_hosts="127.0.0.1")
    assert final["status"] == "failed"
    assert final["error"] == "refusing to download the video from localhost"
    assert fake.count("video") == 1  # the first hop only: the second was never requested
    assert final["available"] == 1000  # nothing charged


async def test_a_redirect_within_the_allowed_hosts_is_followed(tmp_path, s3_server, fake):
    """The control for the one above: the same redirect, to a host in the list."""
    fake.next_jobs(1, video_redirect_host="localhost")
    final = await _run_one_job(tmp_path, s3_server, allowed_result_hosts="127.0.0.1,localhost")
    assert final["status"] == "completed", final
    assert fake.count("video") == 2


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://v3.fal.media/files/x.mp4", True),
    ("https://v3b.fal.media/files/b/x.mp4", True),
    ("https://fal.media/files/x.mp4", True),
    ("https://FAL.MEDIA/files/x.mp4", True),
    ("https://evilfal.media/files/x.mp4", False),
    ("https://fal.media.evil.example/x.mp4", False),
    ("https://storage.googleapis.com/falserverless/x.mp4", False),  # anyone's bucket host
    ("https://127.0.0.1/x.mp4", False),
    ("http://v3.fal.media/files/x.mp4", False),
])
async def test_the_default_result_hosts_are_fals_media_hosts(url, allowed):
    provider = FalProvider(key="fake")  # no allowed_result_hosts: fal's CDN only
    try:
        if allowed:
            await provider._check_download_url(httpx.Request("GET", url))
        else:
            with pytest.raises(ProviderError, match="refusing"):
                await provider._check_download_url(httpx.Request("GET", url))
    finally:
        await provider.aclose()


@pytest.mark.parametrize(("host", "allowed"), [
    ("v3.fal.media", True), ("a.b.fal.media", True),
    ("fal.media", False),  # "*.fal.media" is the subdomains only
    ("evilfal.media", False),
])
async def test_a_wildcard_entry_covers_subdomains_only(host, allowed):
    provider = FalProvider(key="fake", allowed_result_hosts=["*.fal.media"])
    try:
        request = httpx.Request("GET", f"https://{host}/x.mp4")
        if allowed:
            await provider._check_download_url(request)
        else:
            with pytest.raises(ProviderError, match="refusing"):
                await provider._check_download_url(request)
    finally:
        await provider.aclose()


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://v3.fal.media/files/x.mp4", True),
    ("https://fal.media/files/x.mp4", True),
    ("https://evilfal.media/files/x.mp4", False),  # a suffix, not a subdomain
    ("https://fal.media.evil.example/x.mp4", False),
    ("http://v3.fal.media/files/x.mp4", False),
    ("ftp://fal.media/x.mp4", False),
    ("https://169.254.169.254/latest/meta-data", False),
    ("http://localhost/x.mp4", False),  # local http only with allow_insecure_results
])
async def test_result_url_policy(url, allowed):
    """Every request of a download goes through this check (redirects too: it is an httpx
    request hook), so a redirect cannot leave the list either."""
    provider = FalProvider(key="fake", allowed_result_hosts=["fal.media"])
    try:
        if allowed:
            await provider._check_download_url(httpx.Request("GET", url))
        else:
            with pytest.raises(ProviderError, match="refusing"):
                await provider._check_download_url(httpx.Request("GET", url))
        assert provider._http.event_hooks["request"] == [provider._check_download_url]
    finally:
        await provider.aclose()


# -- the event stream is the signed-in person's own ----------------------------------------

def test_nobody_sees_another_persons_events(tmp_path, fake):
    server = ServerProcess(tmp_path, {**fake.env(), "DATABASE_URL": "mem://",
                                      "VIDEO_PROVIDER": "fal", "STATUS_INTERVAL": "0.2"})
    server.start()
    readers: list[EventStreamReader] = []
    try:
        alice, bob = Browserless(server.url), Browserless(server.url)
        alice.signup("alice@example.com")
        bob.signup("bob@example.com")
        key = alice.upload(png_bytes())
        alice_id = key.split("/")[1]
        paths = ["/events", f"/events?user={alice_id}", f"/events?uid={alice_id}",
                 f"/events/?owner=users/{alice_id}"]
        for path in paths:
            readers.append(EventStreamReader(server.url, bob.http.cookies, 20, path))
        readers.append(EventStreamReader(server.url, alice.http.cookies, 20, "/events"))
        signed_out = EventStreamReader(server.url, httpx.Cookies(), 5, "/events")
        readers.append(signed_out)
        for reader in readers:
            reader.start()
        for reader in readers:
            assert reader.opened.wait(10)
        time.sleep(0.3)
        job_id = alice.submit(key)
        final = alice.wait_final(job_id, timeout=30)
        assert final["status"] == "completed", final
        time.sleep(1.0)  # the last events are on their way
    finally:
        for reader in readers:
            reader.stop.set()
        server.stop()
        server.kill()
    for reader in readers:
        reader.join(timeout=30)
    *bobs, alices, signed_out = readers
    # alice's own stream shows her job from start to finish (the positive control) …
    assert alices.status == 200
    assert f"job-{job_id}" in alices.text and "Aurora" in alices.text
    # … and none of bob's streams, whatever they asked for, shows a trace of it
    for reader, path in zip(bobs, paths, strict=True):
        assert reader.status == 200, path
        for secret in (job_id, alice_id, "alice@example.com", "Aurora"):
            assert secret not in reader.text, (path, secret)
    assert signed_out.status == 401 and job_id not in signed_out.text
