"""fal.ai through `fal_client.AsyncClient`: the only module that imports fal_client.

Each call is one request to fal's queue (no hidden polling), bounded by `timeout`:
- submit  POST https://{queue host}/{endpoint}[?fal_webhook=…]
- status  GET  …/{owner}/{alias}/requests/{id}/status?logs=true
- result  GET  …/{owner}/{alias}/requests/{id}, then the video URL is streamed to the caller
- cancel  PUT  …/{owner}/{alias}/requests/{id}/cancel
Errors become TransientProviderError (connection, timeout, 429, 5xx, garbled reply) or
ProviderError (anything else, carrying fal's `detail`). See docs/FAL.md for the facts.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import fal_client
import fal_client.client
import httpx
from asyncstdlib import cached_property as async_cached_property

from app.providers.base import (
    ProviderError,
    ProviderStatus,
    SubmitRequest,
    TransientProviderError,
)

_LOCAL_HOSTS = ("127.0.0.1", "localhost")
# Where a result video may be fetched from when ALLOWED_RESULT_HOSTS is unset: fal's CDN,
# whose files are served from fal.media and its subdomains (v3.fal.media, v3b.fal.media …;
# the evidence is in docs/FAL.md, "Result hosts"). An entry covers the host and its
# subdomains; "*.example.com" covers the subdomains only.
FAL_MEDIA_HOSTS = ("fal.media",)


def _queue_url_from_env() -> str:
    """fal_client reads FAL_QUEUE_RUN_HOST once, when it is imported; read it again here so
    the value in the environment when the provider is built is the one used."""
    run_host = os.environ.get("FAL_RUN_HOST", "fal.run")
    return f"https://{os.environ.get('FAL_QUEUE_RUN_HOST', f'queue.{run_host}')}/"


def _detail_text(detail: Any) -> str:
    """fal's `detail` is a string, or a list of validation errors ({"loc", "msg", ...})."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


def _response_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return _detail_text(body["detail"])
    return response.text[:500]


def _is_transient_status(code: int) -> bool:
    return code == 429 or code >= 500


def _error(what: str, exc: Exception) -> ProviderError:
    """Map what fal_client / httpx raised to the provider's two kinds of error."""
    if isinstance(exc, fal_client.FalClientHTTPError):
        detail = _detail_text(exc.message)
        msg = f"fal {what} failed (HTTP {exc.status_code}): {detail}"
        if _is_transient_status(exc.status_code):
            return TransientProviderError(msg, status_code=exc.status_code)
        return ProviderError(msg, status_code=exc.status_code)
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return TransientProviderError(f"fal {what} timed out")
    if isinstance(exc, httpx.TransportError):
        return TransientProviderError(f"fal {what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, ValueError | KeyError | TypeError):  # garbled JSON or shape
        return TransientProviderError(f"fal {what}: unexpected reply: {exc!r}")
    return ProviderError(f"fal {what}: {exc!r}")


def _host_matches(host: str, rule: str) -> bool:
    """`rule` is a host name (it and its subdomains) or "*.name" (its subdomains only);
    a match is on whole labels, so "evilfal.media" is not under "fal.media"."""
    if rule.startswith("*."):
        return host.endswith(rule[1:])
    return host == rule or host.endswith("." + rule)


@asynccontextmanager
async def _calling(what: str, timeout: float) -> AsyncIterator[None]:
    """Bound a call to fal in time and translate whatever it raises."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except ProviderError:
        raise
    except Exception as exc:
        raise _error(what, exc) from exc


class _PooledTransport(fal_client.client.AsyncBackupDomainTransport):
    """fal_client's transport (a retry on fal's backup domain when connecting fails), over
    an httpx client with our pool limits: its own is built with httpx's defaults, which keep
    at most 20 idle connections, so with more steps than that in flight connections were
    closed and opened again (a TLS handshake per status check, docs/BENCHMARKS.md §5)."""

    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__()
        # The same client fal_client builds (environment proxies honoured), plus `limits`.
        self._client = httpx.AsyncClient(limits=limits, follow_redirects=False)


@dataclass(unsafe_hash=True)
class _PooledAsyncClient(fal_client.AsyncClient):
    """fal_client.AsyncClient whose connection pool keeps `connections` idle connections
    alive: one per driver step, so status checks reuse connections instead of reconnecting."""

    connections: int = 64

    @async_cached_property(asyncio.Lock)
    async def _client(self) -> httpx.AsyncClient:  # fal_client's, with the pool's limits
        auth = await self._auth
        limits = httpx.Limits(max_keepalive_connections=self.connections,
                              max_connections=max(100, self.connections))
        return httpx.AsyncClient(
            transport=_PooledTransport(limits),
            headers={"Authorization": auth.header_value,
                     "User-Agent": fal_client.client.USER_AGENT},
            timeout=self.default_timeout,
        )


class FalProvider:
    name = "fal"

    def __init__(
        self,
        key: str | None = None,
        allowed_result_hosts: list[str] | None = None,
        timeout: float = 30.0,
        *,
        allow_insecure_results: bool = False,
        download_timeout: float = 600.0,
        connections: int = 64,
    ) -> None:
        """`connections`: idle connections to fal kept open, one per driver step
        (DRIVER_CONCURRENCY)."""
        fal_client.client.QUEUE_URL_FORMAT = _queue_url_from_env()
        self.timeout = timeout
        self.download_timeout = download_timeout
        self._allowed_hosts = [h.strip().lower().rstrip(".")
                               for h in allowed_result_hosts or FAL_MEDIA_HOSTS if h.strip()]
        self._allow_insecure = allow_insecure_results
        self._fal = _PooledAsyncClient(key=key, default_timeout=timeout, connections=connections)
        self._fal_http: httpx.AsyncClient | None = None  # fal_client's own, created lazily
        # httpx runs request hooks before every request it sends, each redirect hop
        # included: a redirect is followed only to a URL that passes the same check.
        self._http = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=True,
            max_redirects=5,
            event_hooks={"request": [self._check_download_url]},
        )

    async def _handle(self, endpoint: str, request_id: str) -> fal_client.AsyncRequestHandle:
        handle = await self._fal.get_handle(endpoint, request_id)
        self._fal_http = handle.client
        return handle

    async def submit(self, request: SubmitRequest) -> str:
        arguments = {"prompt": request.prompt, "image_url": request.image_url}
        arguments.update(request.parameters)
        async with _calling("submit", self.timeout):
            handle = await self._fal.submit(
                request.endpoint, arguments, webhook_url=request.webhook_url
            )
        self._fal_http = handle.client
        return handle.request_id

    async def status(self, endpoint: str, request_id: str) -> ProviderStatus:
        async with _calling("status", self.timeout):
            handle = await self._handle(endpoint, request_id)
            st = await handle.status(with_logs=True)
        if isinstance(st, fal_client.Queued):
            return ProviderStatus("queued", queue_position=st.position)
        logs = [
            str(entry.get("message", "")) if isinstance(entry, dict) else str(entry)
            for entry in (getattr(st, "logs", None) or [])
        ]
        if isinstance(st, fal_client.InProgress):
            return ProviderStatus("processing", logs=logs)
        return ProviderStatus("completed", logs=logs)

    async def stream_result(self, endpoint: str, request_id: str, max_bytes: int
                            ) -> AsyncGenerator[bytes, None]:
        url = await self._result_url(endpoint, request_id)
        # Closed with this one, so a reader that stops early frees the connection at once.
        async with aclosing(self._stream(url, max_bytes)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _result_url(self, endpoint: str, request_id: str) -> str:
        # One GET of the stored result (fal_client's result() would poll status first).
        async with _calling("result", self.timeout):
            handle = await self._handle(endpoint, request_id)
            response = await handle.client.get(handle.response_url)
            if response.is_error:
                raise self._result_error(response)
            result = response.json()
        video = result.get("video") if isinstance(result, dict) else None
        url = video.get("url") if isinstance(video, dict) else None
        if not isinstance(url, str) or not url:
            raise ProviderError("fal result has no video URL")
        return url

    @staticmethod
    def _result_error(response: httpx.Response) -> ProviderError:
        """The result of a request that failed is an HTTP error carrying fal's `detail`.
        A 5xx that carries fal's request id or error type is that stored failure (permanent);
        a bare 5xx or 429 is the gateway having trouble (transient)."""
        code = response.status_code
        msg = _response_detail(response)
        from_fal = "x-fal-request-id" in response.headers or "x-fal-error-type" in response.headers
        if code == 429 or (code >= 500 and not from_fal):
            return TransientProviderError(f"fal result failed (HTTP {code}): {msg}",
                                          status_code=code)
        return ProviderError(msg, status_code=code)

    async def _check_download_url(self, request: httpx.Request) -> None:
        url = request.url
        host = (url.host or "").lower()
        secure = url.scheme == "https"
        if not (secure or (url.scheme == "http" and self._allow_insecure and host in _LOCAL_HOSTS)):
            raise ProviderError(f"refusing to download the video over {url.scheme}: {host}")
        if not any(_host_matches(host, rule) for rule in self._allowed_hosts):
            raise ProviderError(f"refusing to download the video from {host}")

    async def _stream(self, url: str, max_bytes: int) -> AsyncGenerator[bytes, None]:
        """The video's chunks, checked: content type and declared length before the first,
        the running size at each. The whole download is bounded by `download_timeout` as a
        deadline checked per chunk (each read by httpx's own timeout): an asyncio.timeout
        cannot span a generator's yields, it would cancel whoever reads the chunks."""
        deadline = time.monotonic() + self.download_timeout
        size = 0
        try:
            async with self._http.stream("GET", url) as response:
                if response.is_error:
                    msg = f"video download failed (HTTP {response.status_code})"
                    if _is_transient_status(response.status_code):
                        raise TransientProviderError(msg)
                    raise ProviderError(msg)
                ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if not (ctype.startswith("video/") or ctype == "application/octet-stream"):
                    raise ProviderError(f"video download has content type {ctype or 'none'}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise ProviderError(f"video is {declared} bytes, over {max_bytes}")
                async for chunk in response.aiter_bytes():  # as read: no re-chunking copy
                    size += len(chunk)
                    if size > max_bytes:
                        raise ProviderError(f"video is over {max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise TransientProviderError("fal video download timed out")
                    yield chunk
        except ProviderError:
            raise
        except Exception as exc:  # httpx's, raised while reading (never the reader's own)
            raise _error("video download", exc) from exc

    async def cancel(self, endpoint: str, request_id: str) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                handle = await self._handle(endpoint, request_id)
                await handle.cancel()
        except fal_client.FalClientHTTPError as exc:
            if exc.status_code == 400 and "ALREADY_COMPLETED" in exc.response.text:
                return  # finished before we asked: nothing to stop
            raise _error("cancel", exc) from exc
        except Exception as exc:
            raise _error("cancel", exc) from exc

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._fal_http is not None:
            await self._fal_http.aclose()
