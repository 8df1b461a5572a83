"""GET /events: one server-sent event stream per open page, for the signed-in person.

The response is sse-starlette's `EventSourceResponse` mounted through a Litestar `@asgi`
route, run the lean way, because one process holds thousands of idle streams:

* Stock `EventSourceResponse.__call__` opens an anyio task group per connection and starts
  four tasks in it (the stream, a ping loop, a shutdown listener with its own anyio.Event,
  a disconnect listener), each wrapped by anyio (TaskHandle, CancelScope, task state), plus
  an anyio.Lock for sends. Measured with tracemalloc, that is about 23 KiB of an idle
  stream's 45 KiB of Python objects.
* Here the stream runs in the request's own task and the library's disconnect listener is
  the only extra task. Keep-alive pings come from the broker (one task for all streams) and
  are written by the stream itself, so no send ever races another and the send lock is not
  needed; the library's own ping is off (`ping=0`; note that `ping=None` means its default
  of 15 s, not "off"). Server shutdown is noticed once per app by the library's shutdown
  watcher (uvicorn's `should_exit`, or `AppStatus`), which then ends every stream at once,
  instead of one listener per stream.
* No timer per write: the library's `send_timeout` wraps every send in an anyio cancel
  scope (about half the CPU of a ping). A client that stops reading is found by the
  broker instead (its buffer overflows, or it takes nothing for a ping interval), which
  cuts the subscription off; if the stream is then stuck in a write, that write is
  cancelled and the stream ends.
* Each event is encoded once per publish, not once per subscriber, and whatever is queued
  for a stream goes out in one write; the response's header list (to which middleware
  appends its cookies) is dropped once it is on the wire.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, asgi
from litestar.types import Receive, Scope, Send
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import JSONResponse

from app.db import sessions as sessions_db
from app.events.broker import PING, Broker, ServerEvent, Subscription
from app.web.sessions import COOKIE as SESSION_COOKIE

log = logging.getLogger("reelforge.events")
SEP = "\r\n"
PING_FRAME = b": ping" + SEP.encode() * 2
HEADERS = {"X-Accel-Buffering": "no", "Cache-Control": "no-store"}


def encode(ev: ServerEvent) -> bytes:
    """The event's bytes on the wire, encoded by sse-starlette once and kept on the event
    (a published event goes to every stream of its person)."""
    if ev is PING:
        return PING_FRAME
    if ev.wire is None:
        ev.wire = ServerSentEvent(data=ev.data, event=ev.event, sep=SEP).encode()
    return ev.wire


class _OneSender:
    """Stands in for the anyio.Lock sse-starlette keeps to serialise its ping task with
    the stream: here the stream is the only sender."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


_ONE_SENDER = _OneSender()


class EventStream(EventSourceResponse):
    """`EventSourceResponse` with one helper task per connection instead of a task group
    of four (see the module docstring). Its body is the snapshot, then whatever the broker
    queues, until the subscription ends (client gone, cut off as too slow, or shutdown)."""

    def __init__(self, subscription: Subscription, notifier: Any, broker: Broker):
        super().__init__(self._frames(), ping=0, sep=SEP, headers=HEADERS, send_timeout=None,
                         client_close_handler_callable=self._client_gone)
        self._send_lock = _ONE_SENDER  # type: ignore[assignment]
        self.subscription = subscription
        self.notifier = notifier
        self.broker = broker
        self._task: asyncio.Task | None = None
        self._sending = False
        self._aborted = False

    async def _client_gone(self, message: Any) -> None:
        self.subscription.end()  # the body reads None and finishes

    async def _send_with_timeout(self, send: Any, message: Any) -> None:
        self._sending = True
        try:
            await send(message)
        finally:
            self._sending = False

    def _abort(self) -> None:
        """The broker cut the stream off: if it is stuck in a write, cancel the write."""
        if self._sending and self._task is not None and not self._aborted:
            self._aborted = True
            self._task.cancel()

    async def _frames(self) -> AsyncIterator[bytes]:
        # The body is first read once the headers are on the wire: drop the header list
        # (middleware appends its Set-Cookie headers to it) rather than keep it all along.
        self.raw_headers = []
        sub = self.subscription
        try:
            snapshot = await self.notifier.snapshot(sub.user_id)
            if snapshot:
                yield b"".join(encode(ev) for ev in snapshot)
            del snapshot
            while (ev := await sub.get()) is not None:
                batch = [ev, *sub.get_nowait()]
                if len(batch) > 1:
                    batch = [e for e in batch if e is not PING]
                yield b"".join(encode(e) for e in batch)
        finally:
            self.broker.unsubscribe(sub)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] != "http" or scope["method"].upper() == "HEAD":
            await super().__call__(scope, receive, send)  # type: ignore[arg-type]
            return
        self._task = task = asyncio.current_task()
        self.subscription.on_cut = self._abort
        listener = asyncio.get_running_loop().create_task(
            self._listen_for_disconnect(receive))  # type: ignore[arg-type]
        try:
            await self._stream_response(send)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            if not (self._aborted and task is not None and task.uncancel() == 0):
                raise
            log.warning("event stream of %s aborted in a write: the client is not reading",
                        self.subscription.user_id)
        finally:
            self.active = False
            self.subscription.on_cut = None
            self._task = None
            listener.cancel()


async def _close_on_server_exit(broker: Broker) -> None:
    """One shutdown listener per app: sse-starlette's watcher notices the server stopping
    (uvicorn's should_exit, found through its signal handler, or AppStatus.should_exit),
    and every stream ends at once, so uvicorn is not left waiting for them."""
    await EventSourceResponse._listen_for_exit_signal()
    log.info("server stopping: ending %d event streams", broker.subscriber_count)
    broker.close_all()


@asgi("/events", is_mount=False, include_in_schema=False, copy_scope=False)
async def events(scope: Scope, receive: Receive, send: Send) -> None:
    services = scope["litestar_app"].state.services
    session = scope.get("session") or {}
    user_id = session.get("uid") if isinstance(session, dict) else None
    if not user_id:
        response = JSONResponse({"error": "not_signed_in", "message": "Sign in first"}, 401)
        await response(scope, receive, send)  # type: ignore[arg-type]
        return
    method = scope["method"].upper()
    if method not in ("GET", "HEAD"):
        response = JSONResponse({"error": "method_not_allowed", "message": "Use GET"}, 405,
                                headers={"Allow": "GET, HEAD"})
        await response(scope, receive, send)  # type: ignore[arg-type]
        return
    broker: Broker = services.broker
    if method == "HEAD":  # headers only: sse-starlette never starts the body on HEAD
        await EventStream(Subscription(user_id), None, broker)(scope, receive, send)
        return
    # Subscribe before taking the snapshot, so nothing that happens in between is missed.
    cookie = Request(scope).cookies.get(SESSION_COOKIE)
    sub = broker.subscribe(user_id, sessions_db.key_of(cookie) if cookie else None)
    broker.run_beside("sse-shutdown", lambda: _close_on_server_exit(broker))
    try:
        await EventStream(sub, services.notifier, broker)(scope, receive, send)
    finally:
        broker.unsubscribe(sub)

