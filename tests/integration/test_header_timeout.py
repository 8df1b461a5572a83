"""`python -m app serve` cuts off connections that do not finish a request's headers in
REQUEST_HEADER_TIMEOUT seconds (slowloris), over real sockets against the real server;
a request whose headers are in is not timed (an event stream stays open)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from app.settings import Settings
from tests.crashkit import ServerProcess
from tests.fakes.live_server import EventReader
from tests.helpers import png_bytes

TIMEOUT = 1.0
SLOW = 100  # connections trickling header lines at once


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("header-timeout"),
                            {"REQUEST_HEADER_TIMEOUT": str(TIMEOUT)})
    process.start()
    try:
        yield process
    finally:
        process.stop()
        process.kill()


def test_the_default_is_ten_seconds():
    assert Settings().request_header_timeout == 10.0


async def _trickle(port: int, first: bytes = b"") -> tuple[float, bytes]:
    """Open a connection, send `first`, then a request line and a header line every 0.3 s
    without ever finishing; returns how long the server kept it open and what it said."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    answer = b""
    try:
        if first:
            writer.write(first)
            answer = await _response(reader)
            started = time.monotonic()
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for i in range(100):
            try:
                chunk = await asyncio.wait_for(reader.read(4096), 0.3)
            except TimeoutError:
                writer.write(f"X-Slow-{i}: still here\r\n".encode())
                continue
            if not chunk:  # closed by the server
                break
            answer += chunk
        return time.monotonic() - started, answer
    finally:
        writer.close()


async def _response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    return head + await reader.readexactly(length)


async def test_trickled_headers_are_cut_off_and_the_server_keeps_answering(server):
    async def health_meanwhile() -> list[float]:
        took = []
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as c:
            for _ in range(5):
                started = time.monotonic()
                assert (await c.get("/health")).status_code == 200
                took.append(time.monotonic() - started)
                await asyncio.sleep(0.2)
        return took

    *slow, took = await asyncio.gather(*[_trickle(server.port) for _ in range(SLOW)],
                                       health_meanwhile())
    for held, answer in slow:
        assert TIMEOUT * 0.8 <= held < TIMEOUT + 2, held  # a deadline, not an idle timer
        assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert max(took) < 1.0


async def test_a_connection_that_sends_nothing_is_closed(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    started = time.monotonic()
    try:
        answer = await asyncio.wait_for(reader.read(), TIMEOUT + 3)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < TIMEOUT + 2


async def test_the_next_request_on_a_kept_alive_connection_is_timed_too(server):
    first = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    held, answer = await _trickle(server.port, first)
    assert answer.startswith(b"HTTP/1.1 200 ")  # the first request was answered
    assert b"HTTP/1.1 408 " in answer and held < TIMEOUT + 2


async def test_an_event_stream_outlives_the_header_timeout(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
        await c.get("/signup")
        r = await c.post("/signup", data={"email": "watcher@example.com",
                                          "password": "correct-horse-1",
                                          "_csrf_token": c.cookies["csrftoken"]})
        assert r.status_code in (200, 303)
        csrf = {"x-csrftoken": c.cookies["csrftoken"]}
        async with c.stream("GET", "/events", timeout=httpx.Timeout(10, read=None)) as events:
            assert events.status_code == 200
            stream = EventReader(events)
            await stream.until(lambda e: e.event == "credits")  # the snapshot
            await asyncio.sleep(TIMEOUT * 3)  # well past the header deadline
            key = (await c.post("/api/library", headers=csrf, files={
                "file": ("a.png", png_bytes((32, 24)), "image/png")})).json()["key"]
            r = await c.post("/api/templates/video", headers=csrf, json={
                "templateSlug": "car-commercial", "startKey": key,
                "variables": {"BRAND": "Aurora", "MODEL": "S1"}})
            assert r.status_code == 202
            job = r.json()["jobId"]
            await stream.until(lambda e: e.event == f"job-{job}")  # still live
