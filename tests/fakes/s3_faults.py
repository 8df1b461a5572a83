"""A fault-injecting HTTP reverse proxy in front of the moto S3 server.

It forwards every request to moto unless told to answer the next N requests with an error
(503 by default, an S3 XML error body) or to hold them for a while first (to trip timeouts).

Use from a test module:

    from tests.fakes.s3_faults import s3_faults_fixture  # noqa: F401

    async def test_retry(s3_faults):
        storage = s3_faults.storage(max_attempts=3)
        s3_faults.fail_next(2)            # two 503s, then real answers
        await storage.put_bytes("k", b"x", "text/plain")
        assert s3_faults.faults_served == 2

`s3_faults` is function-scoped (reset before each test); the proxy itself lives for the session.
`s3_faults.env()` gives STORAGE=s3 settings whose endpoint is the proxy.
"""

from __future__ import annotations

import atexit
import http.client
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fakes.s3_server import S3Server, shared_s3_server

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)


class S3FaultProxy:
    """A threaded reverse proxy to `upstream` with scripted failures and delays."""

    def __init__(self, upstream: S3Server) -> None:
        self.upstream = upstream
        parts = urlsplit(upstream.endpoint_url)
        self._upstream_host = parts.hostname or "127.0.0.1"
        self._upstream_port = parts.port or 80
        self._lock = threading.Lock()
        self._fail_remaining = 0
        self._fail_status = 503
        self._fail_code = "ServiceUnavailable"
        self._delay_remaining = 0
        self._delay_seconds = 0.0
        self.requests = 0  # requests received
        self.faults_served = 0  # error answers given
        self.delays_served = 0  # requests held back
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._make_handler())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def bucket(self) -> str:
        return self.upstream.bucket

    def fail_next(self, n: int, status: int = 503, code: str = "ServiceUnavailable") -> None:
        """Answer the next `n` requests with `status` and an S3 error `code`."""
        with self._lock:
            self._fail_remaining, self._fail_status, self._fail_code = n, status, code

    def fail_always(self, status: int = 503, code: str = "ServiceUnavailable") -> None:
        self.fail_next(10**9, status, code)

    def delay_next(self, n: int, seconds: float) -> None:
        """Hold the next `n` requests for `seconds` before forwarding them."""
        with self._lock:
            self._delay_remaining, self._delay_seconds = n, seconds

    def reset(self) -> None:
        with self._lock:
            self._fail_remaining = self._delay_remaining = 0
            self.requests = self.faults_served = self.delays_served = 0

    def env(self) -> dict[str, str]:
        return {**self.upstream.env(), "S3_ENDPOINT_URL": self.endpoint_url}

    def storage(self, **kwargs: Any):
        """An `S3Storage` that talks to moto through this proxy."""
        return replace(self.upstream, endpoint_url=self.endpoint_url).storage(**kwargs)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="s3-fault-proxy", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- the proxy -----------------------------------------------------------------------

    def _next_action(self) -> tuple[str, Any]:
        with self._lock:
            self.requests += 1
            if self._fail_remaining > 0:
                self._fail_remaining -= 1
                self.faults_served += 1
                return "fail", (self._fail_status, self._fail_code)
            if self._delay_remaining > 0:
                self._delay_remaining -= 1
                self.delays_served += 1
                return "delay", self._delay_seconds
            return "forward", None

    def _make_handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _read_body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                try:
                    body = self._read_body()
                    action, arg = proxy._next_action()
                    if action == "fail":
                        self._fail(*arg)
                        return
                    if action == "delay":
                        time.sleep(arg)
                    self._forward(body)
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
                    self.close_connection = True

            def _fail(self, status: int, code: str) -> None:
                payload = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n'
                    f"<Error><Code>{code}</Code><Message>injected fault</Message>"
                    "<RequestId>fault</RequestId></Error>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                self.close_connection = True

            def _forward(self, body: bytes) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(
                    proxy._upstream_host, proxy._upstream_port, timeout=60
                )
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    resp_headers = resp.getheaders()
                    status, reason = resp.status, resp.reason
                finally:
                    conn.close()
                self.send_response_only(status, reason)
                for name, value in resp_headers:
                    lname = name.lower()
                    if lname in _HOP_BY_HOP:
                        continue
                    if lname == "content-length" and self.command != "HEAD":
                        continue
                    self.send_header(name, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        return Handler


_lock = threading.Lock()
_shared: S3FaultProxy | None = None


def shared_fault_proxy() -> S3FaultProxy:
    """One proxy per process in front of the shared moto server."""
    global _shared
    with _lock:
        if _shared is None:
            proxy = S3FaultProxy(shared_s3_server())
            proxy.start()
            atexit.register(proxy.stop)
            _shared = proxy
        return _shared


@pytest.fixture(name="s3_faults")
def s3_faults_fixture() -> Iterator[S3FaultProxy]:
    """The fault proxy in front of moto, reset before and after the test."""
    proxy = shared_fault_proxy()
    proxy.reset()
    yield proxy
    proxy.reset()


s3_faults = s3_faults_fixture  # same fixture; importing this name makes ruff report F811
