"""Security headers on every HTTP response: a Content-Security-Policy that lets a page run
only the app's own scripts and styles, nosniff, a referrer policy, no framing, and HSTS
when the app's public URL is https.

It is a Litestar `before_send` hook, not route middleware: route middleware never runs for
a request that matches no route (404, 405) or for what the static router serves, and those
responses need the headers too. The header values are computed once, from the settings.

Pages keep to the policy: no inline <script>, no on*= handlers, no style="…" attributes
(static/app.js applies progress widths and delays from data attributes, through the CSSOM,
which the CSP allows), and htmx is told by its meta config not to inject its indicator
<style> nor to eval anything (so no hx-on:*, no `js:` values, no trigger filters)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from litestar.types import Message, Scope

from app.settings import Settings

HSTS = "max-age=31536000; includeSubDomains"


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def media_origins(settings: Settings) -> list[str]:
    """Where the browser loads library images and videos from besides this app: with
    STORAGE=s3 the public base URL or, for presigned URLs, the bucket's own origin (path
    style on a custom endpoint, a bucket subdomain on AWS; see app/storage/s3.py)."""
    if settings.storage != "s3":
        return []  # local storage is served by the app itself (/media)
    origins = [_origin(settings.s3_public_base_url)]
    if not settings.s3_public_base_url:
        if settings.s3_endpoint_url:
            origins.append(_origin(settings.s3_endpoint_url))
        elif settings.s3_bucket:
            origins.append(f"https://{settings.s3_bucket}.s3.amazonaws.com")
            if settings.s3_region:
                origins.append(f"https://{settings.s3_bucket}.s3.{settings.s3_region}"
                               ".amazonaws.com")
    return list(dict.fromkeys(o for o in origins if o))


def content_security_policy(settings: Settings) -> str:
    media = " ".join(["'self'", "blob:", "data:", *media_origins(settings)])
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": media,
        "media-src": media,
        "connect-src": "'self'",  # the API and the /events stream
        "font-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def security_headers(settings: Settings) -> Callable[[Message, Scope], Awaitable[None]]:
    """The `before_send` hook adding the headers to each response that lacks them."""
    headers = {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP level 2
    }
    if settings.secure_cookies:  # PUBLIC_BASE_URL is https: browsers never use http again
        headers["Strict-Transport-Security"] = HSTS

    raw = [(name.lower().encode("latin-1"), value.encode("latin-1"))
           for name, value in headers.items()]

    async def add_headers(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        present = {name.lower() for name, _ in message.get("headers") or ()}
        missing = [header for header in raw if header[0] not in present]
        if missing:  # a response that sets its own value keeps it
            message["headers"] = [*(message.get("headers") or ()), *missing]

    return add_headers
