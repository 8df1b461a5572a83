"""A deadline for a request's headers, which uvicorn does not have.

uvicorn's only connection timer is `timeout_keep_alive`: it starts when a response is
complete and every byte received cancels it, and nothing times a connection before its
first request or while headers trickle in (encode/uvicorn#157, `--timeout-request-start`,
never built). So a client sending one header line every 10 s holds a connection, and its
memory, for as long as it likes; a few hundred of them fill the process. ASGI middleware
cannot help: the app is called only once the headers are complete.

`HeaderTimeoutProtocol` is uvicorn's httptools protocol (what `http="auto"` picks; uvicorn
[standard] installs httptools) with one timer: armed when the connection is made and when
a request begins, disarmed when its headers are complete. When it fires, the connection gets
a 408 (unless a response is going out on it) and is closed. Bodies and responses are not
timed: an upload or an event stream may take as long as it needs once its headers are in.
`python -m app serve` passes it to uvicorn as `http=`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("reelforge.http")

TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
             b"content-length: 26\r\nconnection: close\r\n\r\nRequest headers too slow.\n")


class HeaderTimeoutProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, header_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None

    # Narrower than asyncio's BaseTransport, as in uvicorn's own override (which carries
    # the same ignore): the server always passes a Transport.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:  # the first byte of a request (also on keep-alive)
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:  # a deadline, not an idle timer: data doesn't reset it
            self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        log.info("request headers not complete after %g s: connection from %s closed",
                 self.header_timeout, self.client[0] if self.client else "?")
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(TIMED_OUT)
        self.transport.close()
