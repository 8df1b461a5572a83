"""The request log: one `http.request` event per HTTP request with method, path, status and
duration. The path only: query strings (which may carry presigned-URL signatures or
tokens), headers and cookies are never logged.

It wraps the whole application rather than sitting in the route middleware, so requests
that match no route (404) or are refused before a handler runs are logged too."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from app.observability.logging import get_logger

log = get_logger("reelforge.http")

# Polled or static paths: logged at debug level so they do not drown the rest.
QUIET_PREFIXES = ("/static/", "/health", "/metrics", "/favicon")

ASGICall = Callable[[Any, Any, Any], Awaitable[None]]


async def log_request(call: ASGICall, scope: Any, receive: Any, send: Any) -> None:
    start = time.perf_counter()
    status = 0

    async def sending(message: Any) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        await send(message)

    try:
        await call(scope, receive, sending)
    except BaseException:
        status = status or 500
        raise
    finally:
        path = scope.get("path", "")
        emit = log.debug if path.startswith(QUIET_PREFIXES) and status < 400 else (
            log.warning if status >= 500 or status == 0 else log.info)
        emit("http.request", method=scope.get("method"), path=path,
               status=status or None, duration_ms=round((time.perf_counter() - start) * 1000, 1))
