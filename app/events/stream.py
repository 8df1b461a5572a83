"""GET /events: one server-sent event stream per open page, for the signed-in person."""

from __future__ import annotations

import logging

from litestar import asgi
from litestar.types import Receive, Scope, Send
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import JSONResponse

log = logging.getLogger("reelforge.events")
PING_SECONDS = 20


@asgi("/events", is_mount=False, include_in_schema=False)
async def events(scope: Scope, receive: Receive, send: Send) -> None:
    services = scope["litestar_app"].state.services
    session = scope.get("session") or {}
    user_id = session.get("uid") if isinstance(session, dict) else None
    if not user_id:
        response = JSONResponse({"error": "not_signed_in", "message": "Sign in first"}, 401)
        await response(scope, receive, send)  # type: ignore[arg-type]
        return
    broker = services.broker
    # Subscribe before taking the snapshot, so nothing that happens in between is missed.
    sub = broker.subscribe(user_id)

    async def stream():
        try:
            for ev in await services.notifier.snapshot(user_id):
                yield ServerSentEvent(data=ev.data, event=ev.event)
            while True:
                ev = await sub.queue.get()
                if ev is None:  # cut off (too slow) or shutting down
                    return
                yield ServerSentEvent(data=ev.data, event=ev.event)
        finally:
            broker.unsubscribe(sub)

    response = EventSourceResponse(
        stream(), ping=PING_SECONDS, headers={"X-Accel-Buffering": "no",
                                              "Cache-Control": "no-store"},
        send_timeout=30,
    )
    try:
        await response(scope, receive, send)  # type: ignore[arg-type]
    finally:
        broker.unsubscribe(sub)
