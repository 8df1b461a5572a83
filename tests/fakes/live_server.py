"""The real app on a real socket, for tests that need what an in-process test client cannot
give: endless streams (`/events`), a browser (Playwright), several real connections.

`start_live_server(settings)` runs uvicorn with the app in a background thread of the test
process, on its own event loop, listening on 127.0.0.1 at a free port (the socket is bound
before uvicorn starts, so there is no race for the port). It returns once the app's
lifespan has started (driver and all), as a `LiveServer` with:

* `.url`, `.app` (the Litestar instance; `.services` is `app.state.services`);
* `.run(coro, timeout)`: run a coroutine on the server's loop and return its result (the
  app's services belong to that loop: touch them only through here);
* `.stop()`: a graceful stop, as on SIGTERM (uvicorn's `should_exit`); returns how long it
  took, also kept in `.stopped_in`.

While the server runs, SIGTERM in this process is routed to it the way uvicorn does when it
runs in the main thread (`signal.signal(SIGTERM, server.handle_exit)`), so that code which
finds the running server through that handler (sse-starlette's shutdown watcher) sees it
stop. The previous handler comes back on `stop()`. Only one live server at a time gets
this; a second one still stops, after its `graceful_timeout`.

Fixtures: `live_server` (the app with the test's `settings`), `live_server_factory` (start
any number, with other settings; all stopped at teardown). Helpers to sign up over real
HTTP with httpx (`live_account`, `signup_client`) and to read server-sent events
(`EventReader`, `open_events`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from litestar import Litestar

from app.main import create_app
from app.settings import Settings
from tests.helpers import Account

DEFAULT_PASSWORD = "correct-horse-1"  # noqa: S105 (test accounts only)


@dataclass
class LiveServer:
    url: str
    app: Litestar
    server: uvicorn.Server
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop
    settings: Settings
    stopped_in: float | None = None
    _restore_sigterm: Any = field(default=None, repr=False)

    @property
    def services(self) -> Any:
        return self.app.state.services

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 10) -> Any:
        """Run `coro` on the server's loop; its result, or its exception, comes back."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10) -> Any:
        """Call a plain function on the server's loop thread (e.g. to read the broker)."""

        async def call() -> Any:
            return fn(*args)

        return self.run(call(), timeout)

    def stop(self, timeout: float = 30) -> float:
        """Stop as on SIGTERM and wait for the thread; returns the seconds it took."""
        if self.stopped_in is not None:
            return self.stopped_in
        started = time.monotonic()
        self.server.should_exit = True  # what Server.handle_exit does on SIGTERM
        self.thread.join(timeout)
        elapsed = time.monotonic() - started
        self._give_back_sigterm()
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(5)
            raise RuntimeError(f"live server did not stop within {timeout} s")
        self.stopped_in = elapsed
        return elapsed

    def _give_back_sigterm(self) -> None:
        if self._restore_sigterm is not None and threading.current_thread() is \
                threading.main_thread():
            with contextlib.suppress(ValueError, TypeError):
                if signal.getsignal(signal.SIGTERM) == self.server.handle_exit:
                    signal.signal(signal.SIGTERM, self._restore_sigterm)
            self._restore_sigterm = None


def start_live_server(
    settings: Settings, *, app: Litestar | None = None, graceful_timeout: float = 3.0,
    startup_timeout: float = 30.0, log_level: str = "warning",
) -> LiveServer:
    """Start the app (or `app`) with uvicorn in a background thread; see the module doc."""
    app = app or create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="on", log_level=log_level,
        access_log=False, timeout_graceful_shutdown=graceful_timeout, proxy_headers=False,
    )
    server = uvicorn.Server(config)
    loop_box: dict[str, Any] = {}

    async def serve() -> None:
        loop_box["loop"] = asyncio.get_running_loop()
        await server.serve(sockets=[sock])

    def target() -> None:
        try:
            # uvicorn's own choice of loop (uvloop when installed), as `serve` gets.
            with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
                runner.run(serve())
        except BaseException as exc:  # startup failure ends in SystemExit
            loop_box["error"] = exc
        finally:
            sock.close()

    thread = threading.Thread(target=target, name=f"live-server-{port}", daemon=True)
    restore = None
    if threading.current_thread() is threading.main_thread():
        restore = signal.signal(signal.SIGTERM, server.handle_exit)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            if restore is not None:
                signal.signal(signal.SIGTERM, restore)
            raise RuntimeError(f"live server did not start: {loop_box.get('error')!r}")
        time.sleep(0.02)
    return LiveServer(url=f"http://127.0.0.1:{port}", app=app, server=server, thread=thread,
                      loop=loop_box["loop"], settings=settings, _restore_sigterm=restore)


@pytest.fixture
def live_server_factory():
    """Start live servers (`factory(settings, **kw)`); all are stopped at teardown."""
    servers: list[LiveServer] = []

    def factory(settings: Settings, **kw: Any) -> LiveServer:
        server = start_live_server(settings, **kw)
        servers.append(server)
        return server

    yield factory
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def live_server(settings, live_server_factory) -> LiveServer:
    """The app (driver and all) with this test's settings, on a real socket."""
    return live_server_factory(settings)


# --- people and their HTTP clients --------------------------------------------------------
async def signup(client: httpx.AsyncClient, email: str,
                 password: str = DEFAULT_PASSWORD) -> Account:
    """Sign up over real HTTP: GET /signup for the csrftoken cookie, POST the form."""
    return await Account.signup(client, email, password)


@contextlib.asynccontextmanager
async def live_account(server: LiveServer | str, email: str,
                       password: str = DEFAULT_PASSWORD) -> AsyncIterator[Account]:
    """A new account with its own httpx client (and cookies) against a live server."""
    url = server if isinstance(server, str) else server.url
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield await signup(client, email, password)


def signup_client(url: str, email: str, password: str = DEFAULT_PASSWORD) -> httpx.Client:
    """The same for synchronous code (Playwright tests): a signed-in httpx.Client whose
    cookies (`client.cookies`) can be handed to a browser context. Close it when done."""
    client = httpx.Client(base_url=url, timeout=30)
    client.get("/signup")
    r = client.post("/signup", data={"email": email, "password": password,
                                     "_csrf_token": client.cookies.get("csrftoken")},
                    follow_redirects=False)
    if r.status_code != 303:
        client.close()
        raise AssertionError(f"signup failed: {r.status_code} {r.text[:300]}")
    client.headers["x-csrftoken"] = client.cookies.get("csrftoken") or ""
    return client


# --- reading server-sent events -----------------------------------------------------------
@dataclass(frozen=True)
class SSE:
    event: str
    data: str


class EventReader:
    """Parses a text/event-stream response into events (`event:` and `data:` lines, a
    blank line ends an event; comment lines, i.e. pings, are counted, not returned)."""

    def __init__(self, response: httpx.Response):
        self.response = response
        self._lines = response.aiter_lines()
        self.comments = 0
        self.seen: list[SSE] = []
        self.ended = False

    async def next(self, timeout: float = 5.0) -> SSE:
        """The next event; TimeoutError if none comes in time, EOFError at the end."""
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> SSE:
        name, data = "message", []
        while True:
            try:
                line = await self._lines.__anext__()
            except StopAsyncIteration:
                self.ended = True
                raise EOFError("the stream ended") from None
            if line == "":
                if data:
                    event = SSE(name, "\n".join(data))
                    self.seen.append(event)
                    return event
                name, data = "message", []
                continue
            field_, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field_ == "":
                self.comments += 1
            elif field_ == "event":
                name = value
            elif field_ == "data":
                data.append(value)

    async def until(self, match: Callable[[SSE], bool], timeout: float = 10.0) -> SSE:
        """Read events until one matches (all are kept in `.seen`)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching event; saw {[e.event for e in self.seen]}")
            event = await self.next(left)
            if match(event):
                return event

    async def drain_to_end(self, timeout: float = 5.0) -> None:
        """Read until the server ends the stream (EOFError inside is the expected end)."""
        with contextlib.suppress(EOFError):
            while True:
                await self.next(timeout)


@contextlib.asynccontextmanager
async def open_events(client: httpx.AsyncClient | Account,
                      timeout: float = 10.0) -> AsyncIterator[EventReader]:
    """GET /events with the client's cookies, as a reader; closed on exit."""
    http = client.client if isinstance(client, Account) else client
    async with http.stream("GET", "/events", headers={"accept": "text/event-stream"},
                           timeout=httpx.Timeout(timeout, read=None)) as response:
        yield EventReader(response)
