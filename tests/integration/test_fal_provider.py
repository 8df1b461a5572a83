"""The real FalProvider (hence the real fal_client) against FakeFal over HTTPS."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing
from pathlib import Path

import pytest

from app.providers.base import (
    ProviderError,
    ProviderStatus,
    SubmitRequest,
    TransientProviderError,
)
from app.providers.fal import FalProvider
from app.providers.fal_webhook import FalWebhookVerifier, JwksUnavailable, WebhookRejected
from app.storage.s3 import S3Storage
from tests.fakes import fal_server
from tests.fakes.fal_server import FakeFal
from tests.fakes.s3_server import S3Server, s3_server_fixture  # noqa: F401

fake_fal = fal_server.fake_fal  # the module-scoped fixture

ENDPOINT = "fal-ai/kling-video/v2.1/standard/image-to-video"
MB = 1024 * 1024
FAKE_MEDIA = ["127.0.0.1", "localhost"]  # by default only fal's own media hosts are fetched


@pytest.fixture(autouse=True)
def _clean_fake(fake_fal: FakeFal) -> None:
    fake_fal.reset()


@pytest.fixture
async def provider(fake_fal: FakeFal) -> AsyncIterator[FalProvider]:
    p = FalProvider(timeout=2.0, download_timeout=5.0, allowed_result_hosts=FAKE_MEDIA)
    yield p
    await p.aclose()


def request(**kw) -> SubmitRequest:
    base = SubmitRequest(
        endpoint=ENDPOINT,
        prompt="a cat on a skateboard",
        image_url="https://img.example/cat.png",
        parameters={"duration": "5", "aspect_ratio": "16:9"},
    )
    return dataclasses.replace(base, **kw)


async def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def submit_done(provider: FalProvider, fake: FakeFal, **spec) -> str:
    """Submit a job that completes at once (unless spec says otherwise)."""
    fake.next_jobs(**{"queue_time": 0.0, "run_time": 0.0, **spec})
    return await provider.submit(request())


async def read_result(provider: FalProvider, rid: str, max_bytes: int,
                      got: list[bytes] | None = None) -> bytes:
    """The video through stream_result, as the driver reads it. `got` keeps the chunks
    that arrived when the stream raises."""
    got = [] if got is None else got
    async with aclosing(provider.stream_result(ENDPOINT, rid, max_bytes)) as chunks:
        async for chunk in chunks:
            got.append(chunk)
    return b"".join(got)


def busy_connections(provider: FalProvider) -> int:
    """Connections of the download client still serving a response (neither idle nor
    closed): a stream that ended or raised must have released its connection."""
    pool = provider._http._transport._pool
    return sum(not (c.is_idle() or c.is_closed()) for c in pool.connections)


# ------------------------------------------------------------------ happy path


async def test_full_happy_path(provider: FalProvider, fake_fal: FakeFal) -> None:
    fake_fal.next_jobs(1, queue_time=5.0, run_time=0.0)  # stays queued ahead of the next
    first = await provider.submit(request())
    fake_fal.next_jobs(1, queue_time=0.4, run_time=0.4)
    rid = await provider.submit(request())

    job = fake_fal.jobs[rid]
    assert job.endpoint == ENDPOINT
    assert job.arguments == {
        "prompt": "a cat on a skateboard",
        "image_url": "https://img.example/cat.png",
        "duration": "5",
        "aspect_ratio": "16:9",
    }
    assert job.webhook_url is None

    seen: list[ProviderStatus] = []
    while not seen or seen[-1].state != "completed":
        seen.append(await provider.status(ENDPOINT, rid))
        await asyncio.sleep(0.05)
    states = [s.state for s in seen]
    assert states[0] == "queued" and seen[0].queue_position == 1  # `first` is ahead of it
    assert "processing" in states
    assert states.index("processing") < states.index("completed")
    assert any(s.logs for s in seen if s.state == "processing")
    assert seen[-1].logs == ["Loading model", "Generating frames", "Encoding video"]
    assert (await provider.status(ENDPOINT, first)).state == "queued"

    # stream_result raises on a type that is not a video: reading it whole is the type check
    video = await read_result(provider, rid, max_bytes=10 * MB)
    assert video == fake_fal.default_video
    assert busy_connections(provider) == 0

    counts = fake_fal.counts_by_job()[rid]
    assert counts["submit"] == 1 and counts["result"] == 1 and counts["video"] == 1
    assert counts["status"] == len(seen)  # one request per status(), no hidden polling


async def test_large_video_streams_in_chunks(provider: FalProvider, fake_fal: FakeFal) -> None:
    rid = await submit_done(provider, fake_fal, video_size=8 * MB)
    async with aclosing(provider.stream_result(ENDPOINT, rid, 9 * MB)) as stream:
        chunks = [await anext(stream)]
        assert busy_connections(provider) == 1  # held while the body is being read
        chunks += [chunk async for chunk in stream]
    assert busy_connections(provider) == 0
    video = b"".join(chunks)
    assert len(video) == 8 * MB
    assert b"".join(fal_server.generated_video(8 * MB)) == video
    assert len(chunks) > 1 and max(map(len, chunks)) < MB  # as read, never whole


async def test_a_stream_closed_early_releases_its_connection_at_once(
        provider: FalProvider, fake_fal: FakeFal) -> None:
    """The driver closes the stream when its upload fails midway: the download's
    connection must be given back then, not whenever the garbage collector runs."""
    rid = await submit_done(provider, fake_fal, video_size=8 * MB)
    async with aclosing(provider.stream_result(ENDPOINT, rid, 9 * MB)) as stream:
        await anext(stream)
        assert busy_connections(provider) == 1
    assert busy_connections(provider) == 0


# ------------------------------------------------------------------ failures of the request


@pytest.mark.parametrize("error_status", [422, 500])
async def test_error_completion_is_permanent_with_fals_message(
    provider: FalProvider, fake_fal: FakeFal, error_status: int
) -> None:
    rid = await submit_done(
        provider, fake_fal, error="Image is not safe for work", error_status=error_status
    )
    assert (await provider.status(ENDPOINT, rid)).state == "completed"
    with pytest.raises(ProviderError) as info:
        await read_result(provider, rid, max_bytes=MB)
    assert not isinstance(info.value, TransientProviderError)
    assert "Image is not safe for work" in str(info.value)
    assert fake_fal.count("video") == 0


async def test_wrong_key_is_permanent(fake_fal: FakeFal) -> None:
    p = FalProvider(key="wrong", timeout=2.0)
    try:
        with pytest.raises(ProviderError) as info:
            await p.submit(request())
        assert not isinstance(info.value, TransientProviderError)
        assert "401" in str(info.value)
    finally:
        await p.aclose()


async def test_unknown_request_is_permanent(provider: FalProvider) -> None:
    with pytest.raises(ProviderError) as info:
        await provider.status(ENDPOINT, "no-such-request")
    assert not isinstance(info.value, TransientProviderError)


# ------------------------------------------------------------------ transient faults


@pytest.mark.parametrize("kind", ["submit", "status", "result", "cancel"])
async def test_5xx_is_transient(provider: FalProvider, fake_fal: FakeFal, kind: str) -> None:
    rid = await submit_done(provider, fake_fal, never_complete=(kind == "cancel"))
    fake_fal.fail_next(kind, status=503)
    with pytest.raises(TransientProviderError):
        if kind == "submit":
            await provider.submit(request())
        elif kind == "status":
            await provider.status(ENDPOINT, rid)
        elif kind == "result":
            await read_result(provider, rid, MB)
        else:
            await provider.cancel(ENDPOINT, rid)
    assert fake_fal.count(kind) >= 1
    # the fault was one request: the next call goes through
    assert (await provider.status(ENDPOINT, rid)).state in ("processing", "completed")


async def test_429_on_result_is_transient(provider: FalProvider, fake_fal: FakeFal) -> None:
    rid = await submit_done(provider, fake_fal)
    fake_fal.fail_next("result", status=429, body='{"detail": "Too many requests"}')
    with pytest.raises(TransientProviderError):
        await read_result(provider, rid, MB)


@pytest.mark.parametrize("kind", ["submit", "status", "result", "cancel"])
async def test_hanging_fal_times_out_as_transient(fake_fal: FakeFal, kind: str) -> None:
    p = FalProvider(timeout=0.5, allowed_result_hosts=FAKE_MEDIA)
    try:
        rid = await submit_done(p, fake_fal, never_complete=(kind == "cancel"))
        fake_fal.delay_next(kind, 3600)
        started = time.monotonic()
        with pytest.raises(TransientProviderError, match="timed out"):
            if kind == "submit":
                await p.submit(request())
            elif kind == "status":
                await p.status(ENDPOINT, rid)
            elif kind == "result":
                await read_result(p, rid, MB)
            else:
                await p.cancel(ENDPOINT, rid)
        assert time.monotonic() - started < 2.0
    finally:
        await p.aclose()


async def test_slow_video_download_times_out(fake_fal: FakeFal) -> None:
    p = FalProvider(timeout=2.0, download_timeout=0.5, allowed_result_hosts=FAKE_MEDIA)
    try:
        rid = await submit_done(p, fake_fal)
        fake_fal.delay_next("video", 3600)
        got: list[bytes] = []
        with pytest.raises(TransientProviderError):
            await read_result(p, rid, MB, got)
        assert got == []  # nothing was handed on
        assert busy_connections(p) == 0
    finally:
        await p.aclose()


async def test_malformed_json_is_transient(provider: FalProvider, fake_fal: FakeFal) -> None:
    rid = await submit_done(provider, fake_fal)
    fake_fal.malformed_next("status")
    with pytest.raises(TransientProviderError):
        await provider.status(ENDPOINT, rid)


async def test_nothing_listening_is_transient(fake_fal: FakeFal) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    os.environ["FAL_QUEUE_RUN_HOST"] = f"127.0.0.1:{dead_port}"
    try:
        p = FalProvider(timeout=0.5)  # the queue host is read when a provider is built
    finally:
        os.environ["FAL_QUEUE_RUN_HOST"] = fake_fal.base_host
    try:
        with pytest.raises(TransientProviderError):
            await p.status(ENDPOINT, "whatever")
    finally:
        await p.aclose()


# ------------------------------------------------------------------ the video download


async def test_result_url_404_is_an_error(provider: FalProvider, fake_fal: FakeFal) -> None:
    rid = await submit_done(provider, fake_fal, video_404=True)
    got: list[bytes] = []
    with pytest.raises(ProviderError, match="404") as info:
        await read_result(provider, rid, MB, got)
    assert not isinstance(info.value, TransientProviderError)
    assert got == []


@pytest.mark.parametrize("omit_content_length", [False, True])
async def test_max_bytes_enforced(
    provider: FalProvider, fake_fal: FakeFal, omit_content_length: bool
) -> None:
    rid = await submit_done(
        provider, fake_fal, video_size=3 * MB, omit_content_length=omit_content_length
    )
    got: list[bytes] = []
    with pytest.raises(ProviderError, match="over") as info:
        await read_result(provider, rid, max_bytes=1 * MB, got=got)
    assert not isinstance(info.value, TransientProviderError)
    # a declared Content-Length is refused before any byte is read
    assert (str(3 * MB) in str(info.value)) != omit_content_length
    read = sum(map(len, got))
    if omit_content_length:
        assert 0 < read <= 1 * MB  # found mid-stream; the chunk that crossed it is not handed on
    else:
        assert read == 0
    assert busy_connections(provider) == 0  # the rest of the body is not left pending


async def test_content_type_checked(provider: FalProvider, fake_fal: FakeFal) -> None:
    rid = await submit_done(provider, fake_fal, content_type="text/html")
    with pytest.raises(ProviderError, match="content type"):
        await read_result(provider, rid, MB)
    rid = await submit_done(provider, fake_fal, content_type="application/octet-stream")
    assert await read_result(provider, rid, MB) == fake_fal.default_video  # accepted


# ------------------------------------------------------------------ streamed into S3


@pytest.fixture(scope="module")
def s3_store(s3_server: S3Server) -> Iterator[S3Storage]:
    store = s3_server.storage()
    yield store
    store.close()


def open_uploads(store: S3Storage, key: str) -> list[dict]:
    return store._client.list_multipart_uploads(Bucket=store.bucket,
                                                Prefix=key).get("Uploads", [])


async def test_stream_result_into_s3_is_the_video(
    provider: FalProvider, fake_fal: FakeFal, s3_store: S3Storage, tmp_path: Path
) -> None:
    rid = await submit_done(provider, fake_fal, video_size=18 * MB)
    key = f"users/u{rid}/library/videos/{rid}.mp4"
    async with aclosing(provider.stream_result(ENDPOINT, rid, 20 * MB)) as chunks:
        size = await s3_store.put_stream(key, chunks, "video/mp4", copy_to=tmp_path / "c")
    expected = b"".join(fal_server.generated_video(18 * MB))
    assert size == 18 * MB
    assert await s3_store.get_bytes(key) == expected == (tmp_path / "c").read_bytes()


@pytest.mark.parametrize("omit_content_length", [False, True])
async def test_the_size_cap_stops_a_stream_into_s3_with_nothing_stored(
    provider: FalProvider, fake_fal: FakeFal, s3_store: S3Storage, omit_content_length: bool
) -> None:
    """Without a Content-Length the cap is found mid-stream, after a part went to S3: the
    upload is aborted. With one, the stream is refused before its first byte."""
    rid = await submit_done(provider, fake_fal, video_size=20 * MB,
                            omit_content_length=omit_content_length)
    key = f"users/u{rid}/library/videos/{rid}.mp4"
    read = 0

    async def counted(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        nonlocal read
        async for chunk in chunks:
            read += len(chunk)
            yield chunk

    with pytest.raises(ProviderError, match="over") as info:
        async with aclosing(provider.stream_result(ENDPOINT, rid, 12 * MB)) as chunks:
            await s3_store.put_stream(key, counted(chunks), "video/mp4")
    assert not isinstance(info.value, TransientProviderError)
    if omit_content_length:
        assert 8 * MB < read <= 12 * MB  # a part had gone to S3 when the cap was found
    else:
        assert read == 0
    assert await s3_store.size(key) is None
    assert open_uploads(s3_store, key) == []


async def test_stream_result_checks_the_content_type_before_any_byte(
    provider: FalProvider, fake_fal: FakeFal
) -> None:
    rid = await submit_done(provider, fake_fal, content_type="text/html")
    chunks = provider.stream_result(ENDPOINT, rid, MB)
    with pytest.raises(ProviderError, match="content type"):
        await anext(chunks)
    await chunks.aclose()


async def test_download_hosts_are_limited(fake_fal: FakeFal) -> None:
    port = fake_fal.port
    only_localhost = FalProvider(timeout=2.0, allowed_result_hosts=["localhost"])
    insecure = FalProvider(timeout=2.0, allowed_result_hosts=FAKE_MEDIA)
    try:
        rid = await submit_done(only_localhost, fake_fal)
        with pytest.raises(ProviderError, match="refusing"):  # 127.0.0.1 is not allowed
            await read_result(only_localhost, rid, MB)

        url = f"https://localhost:{port}/_media/{{}}/output.mp4"
        rid = await submit_done(only_localhost, fake_fal)
        fake_fal.update_job(rid, video_url=url.format(rid))
        video = await read_result(only_localhost, rid, MB)
        assert len(video) == len(fake_fal.default_video)

        rid = await submit_done(insecure, fake_fal)
        fake_fal.update_job(rid, video_url=f"http://127.0.0.1:{port}/_media/{rid}/output.mp4")
        with pytest.raises(ProviderError, match="refusing"):
            await read_result(insecure, rid, MB)
        assert fake_fal.count("video") == 1  # the refused ones never left the process
    finally:
        await only_localhost.aclose()
        await insecure.aclose()


# ------------------------------------------------------------------ connections


async def test_connections_are_kept_for_every_step(fake_fal: FakeFal) -> None:
    """As many status checks at once as the driver runs steps, round after round, over the
    same connections: no reconnect (a TLS handshake) per check once the pool is warm.
    httpx's default pool keeps only 20 idle connections and closes the rest."""
    steps = 32
    fake_fal.next_jobs(steps, queue_time=30)
    p = FalProvider(timeout=5.0, connections=steps)
    try:
        rids = [await p.submit(request()) for _ in range(steps)]
        fake_fal.reset_counts()
        for _ in range(3):  # each answer takes 0.1 s, so the 32 checks overlap
            fake_fal.delay_next("status", 0.1, n=steps)
            await asyncio.gather(*(p.status(ENDPOINT, rid) for rid in rids))
        peers = {r.peer for r in fake_fal.requests if r.kind == "status"}
        assert fake_fal.count("status") == 3 * steps
        assert len(peers) <= steps, len(peers)
    finally:
        await p.aclose()


# ------------------------------------------------------------------ cancel


async def test_cancel_before_completion(provider: FalProvider, fake_fal: FakeFal) -> None:
    fake_fal.next_jobs(queue_time=30)
    rid = await provider.submit(request())
    assert (await provider.status(ENDPOINT, rid)).state == "queued"
    await provider.cancel(ENDPOINT, rid)
    assert fake_fal.jobs[rid].cancelled
    assert fake_fal.count("cancel", rid) == 1
    assert (await provider.status(ENDPOINT, rid)).state == "completed"
    with pytest.raises(ProviderError, match="cancelled"):
        await read_result(provider, rid, MB)


async def test_cancel_after_completion_is_not_an_error(
    provider: FalProvider, fake_fal: FakeFal
) -> None:
    rid = await submit_done(provider, fake_fal)
    assert (await provider.status(ENDPOINT, rid)).state == "completed"
    await provider.cancel(ENDPOINT, rid)
    assert fake_fal.requests[-1].status_code == 400  # fal said ALREADY_COMPLETED
    assert not fake_fal.jobs[rid].cancelled


async def test_cancel_unknown_request_is_an_error(provider: FalProvider) -> None:
    with pytest.raises(ProviderError):
        await provider.cancel(ENDPOINT, "no-such-request")


# ------------------------------------------------------------------ webhooks


async def _webhook_for(provider: FalProvider, fake: FakeFal, **spec) -> fal_server.WebhookMessage:
    fake.next_jobs(queue_time=0.0, run_time=0.1, **spec)
    rid = await provider.submit(request(webhook_url=fake.sink_url))
    assert fake.jobs[rid].webhook_url == fake.sink_url  # sent as ?fal_webhook=
    await wait_for(lambda: any(m.headers["x-fal-webhook-request-id"] == rid for m in fake.sink))
    return next(m for m in fake.sink if m.headers["x-fal-webhook-request-id"] == rid)


@pytest.fixture
async def verifier(fake_fal: FakeFal) -> AsyncIterator[FalWebhookVerifier]:
    v = FalWebhookVerifier(fake_fal.jwks_url)
    yield v
    await v.aclose()


async def test_delivered_webhook_verifies(
    provider: FalProvider, fake_fal: FakeFal, verifier: FalWebhookVerifier
) -> None:
    msg = await _webhook_for(provider, fake_fal)
    rid = msg.headers["x-fal-webhook-request-id"]
    payload = await verifier.verify(msg.headers, msg.body)
    assert payload.request_id == rid == payload.gateway_request_id
    assert payload.status == "OK" and payload.error is None
    assert payload.payload["video"]["url"].endswith(f"/_media/{rid}/output.mp4")
    assert payload.payload["video"]["content_type"] == "video/mp4"
    assert fake_fal.webhooks[-1].status_code == 200


async def test_error_webhook_carries_fals_message(
    provider: FalProvider, fake_fal: FakeFal, verifier: FalWebhookVerifier
) -> None:
    msg = await _webhook_for(provider, fake_fal, error="CUDA out of memory")
    payload = await verifier.verify(msg.headers, msg.body)
    assert payload.status == "ERROR"
    assert payload.error == "CUDA out of memory"


async def test_forged_altered_and_stale_webhooks_are_rejected(
    provider: FalProvider, fake_fal: FakeFal, verifier: FalWebhookVerifier
) -> None:
    msg = await _webhook_for(provider, fake_fal)
    rid = msg.headers["x-fal-webhook-request-id"]
    await verifier.verify(msg.headers, msg.body)

    random_sig = {**msg.headers, "x-fal-webhook-signature": "ab" * 64}
    unknown_key = fake_fal.build_webhook(rid, forged=True)
    altered = msg.body.replace(b'"status": "OK"', b'"status": "ERROR"')
    assert altered != msg.body
    old = fake_fal.build_webhook(rid, timestamp=int(time.time()) - 301)
    future = fake_fal.build_webhook(rid, timestamp=int(time.time()) + 301)
    cases = {
        "random signature": (random_sig, msg.body),
        "unknown key": (unknown_key.headers, unknown_key.body),
        "altered body": (msg.headers, altered),
        "old timestamp": (old.headers, old.body),
        "future timestamp": (future.headers, future.body),
        "no signature": (
            {k: v for k, v in msg.headers.items() if k != "x-fal-webhook-signature"},
            msg.body,
        ),
        "other request id": ({**msg.headers, "x-fal-webhook-request-id": "other"}, msg.body),
    }
    for name, (headers, body) in cases.items():
        with pytest.raises(WebhookRejected):
            await verifier.verify(headers, body)
            pytest.fail(f"{name} was accepted")

    # within the window (4 minutes old) and validly signed: accepted
    recent = fake_fal.build_webhook(rid, timestamp=int(time.time()) - 240)
    assert (await verifier.verify(recent.headers, recent.body)).request_id == rid


async def test_signed_garbage_body_is_rejected(
    provider: FalProvider, fake_fal: FakeFal, verifier: FalWebhookVerifier
) -> None:
    msg = await _webhook_for(provider, fake_fal)
    rid = msg.headers["x-fal-webhook-request-id"]
    for body in (b"{not json", b"[1, 2]", b'{"request_id": "x", "status": "OK"}'):
        signed = fake_fal.build_webhook(rid, body=body)
        with pytest.raises(WebhookRejected):
            await verifier.verify(signed.headers, signed.body)


@pytest.mark.parametrize("padded", [True, False])
async def test_jwks_x_padded_or_not(provider: FalProvider, fake_fal: FakeFal, padded: bool) -> None:
    fake_fal.jwks_padded = padded
    x = fake_fal.jwks()["keys"][0]["x"]
    assert x.endswith("=") == padded
    msg = await _webhook_for(provider, fake_fal)
    v = FalWebhookVerifier(fake_fal.jwks_url)
    try:
        assert (await v.verify(msg.headers, msg.body)).status == "OK"
    finally:
        await v.aclose()


async def test_jwks_is_cached_and_refetched_sparingly(
    provider: FalProvider, fake_fal: FakeFal
) -> None:
    msg = await _webhook_for(provider, fake_fal)
    rid = msg.headers["x-fal-webhook-request-id"]
    t0 = time.time()
    v = FalWebhookVerifier(fake_fal.jwks_url, cache_ttl=150, min_refetch_interval=60)
    try:
        for _ in range(3):
            await v.verify(msg.headers, msg.body, now=t0)
        assert fake_fal.count("jwks") == 1

        # forged calls may trigger one refetch a minute, no more
        for _ in range(5):
            forged = fake_fal.build_webhook(rid, forged=True)
            with pytest.raises(WebhookRejected):
                await v.verify(forged.headers, forged.body, now=t0 + 1)
        assert fake_fal.count("jwks") == 1  # the last fetch was less than 60 s ago
        forged = fake_fal.build_webhook(rid, forged=True)
        with pytest.raises(WebhookRejected):
            await v.verify(forged.headers, forged.body, now=t0 + 70)
        assert fake_fal.count("jwks") == 2

        # a rotated key is picked up by the refetch an unknown signature triggers
        fake_fal.rotate_key()
        fresh = fake_fal.build_webhook(rid)
        assert (await v.verify(fresh.headers, fresh.body, now=t0 + 140)).request_id == rid
        assert fake_fal.count("jwks") == 3

        # past cache_ttl the keys are fetched again
        await v.verify(fresh.headers, fresh.body, now=t0 + 140 + 151)
        assert fake_fal.count("jwks") == 4
    finally:
        await v.aclose()


async def test_jwks_unavailable(provider: FalProvider, fake_fal: FakeFal) -> None:
    msg = await _webhook_for(provider, fake_fal)
    fake_fal.fail_next("jwks", status=500)
    v = FalWebhookVerifier(fake_fal.jwks_url)
    try:
        with pytest.raises(JwksUnavailable):
            await v.verify(msg.headers, msg.body)
    finally:
        await v.aclose()


async def test_redelivery_and_forgery_helpers(
    provider: FalProvider, fake_fal: FakeFal, verifier: FalWebhookVerifier
) -> None:
    msg = await _webhook_for(provider, fake_fal)
    rid = msg.headers["x-fal-webhook-request-id"]
    assert await fake_fal.aredeliver(rid) == 200
    assert await fake_fal.asend_forged(rid) == 200
    received = [m for m in fake_fal.sink if m.headers["x-fal-webhook-request-id"] == rid]
    assert len(received) == 3
    await verifier.verify(received[1].headers, received[1].body)
    with pytest.raises(WebhookRejected):
        await verifier.verify(received[2].headers, received[2].body)
