"""Refuse requests whose Host header names a host we don't serve (DNS rebinding, cache
poisoning, poisoned absolute URLs). Litestar's own middleware compares the header with
its port included, so "localhost:8000" never matches "localhost"; this one compares the
host name alone."""

from __future__ import annotations

import re

from litestar.datastructures import Headers
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send
from starlette.responses import JSONResponse

# RFC 9110 Host = uri-host [ ":" port ]: a bracketed IPv6 literal or a name / IPv4 address,
# then nothing but an optional port. Anything else ("[::1]evil.example", "a b", "x:y") is
# not a host we serve, whatever it starts with.
_HOST = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9_-][a-z0-9_.-]*)(?::[0-9]{0,5})?")


def host_name(header: str) -> str:
    """The host name of a Host header ("" when it is malformed), without the port."""
    match = _HOST.fullmatch(header.strip().lower())
    return match.group(1) if match else ""


class AllowedHosts(ASGIMiddleware):
    scopes = (ScopeType.HTTP, ScopeType.WEBSOCKET)

    def __init__(self, hosts: list[str]):
        self.any = "*" in hosts
        self.exact = {h.lower() for h in hosts if not h.startswith("*.")}
        self.suffixes = tuple(h[1:].lower() for h in hosts if h.startswith("*."))

    def allowed(self, header: str | None) -> bool:
        if self.any:
            return True
        name = host_name(header or "")
        return bool(name) and (name in self.exact or name.endswith(self.suffixes or ("\0",)))

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if self.allowed(Headers.from_scope(scope).get("host")):
            await next_app(scope, receive, send)
            return
        response = JSONResponse({"error": "invalid_host", "message": "Invalid Host header"}, 400)
        # The same ASGI dicts: Starlette types them as MutableMapping, Litestar as TypedDicts.
        await response(scope, receive, send)  # type: ignore[arg-type]
