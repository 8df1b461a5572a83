"""Verification of fal's webhook calls.

fal signs `request_id \\n user_id \\n timestamp \\n sha256hex(raw body)` with Ed25519; the
hex signature and the three values come in the X-Fal-Webhook-* headers, and the public keys
in a JWKS (`{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": base64url}]}`). Keys are cached
for `cache_ttl`; when no cached key verifies a signature the JWKS is fetched again, at most
once per `min_refetch_interval`, so forged calls cannot turn us into a fetch amplifier.
With `user_id` (FAL_USER_ID), a call signed for another fal account is refused too.
Replays inside the 5-minute window are the route's concern (app/web/webhooks.py remembers
accepted request ids in the database).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TIMESTAMP_TOLERANCE = 300.0  # seconds either side of our clock

H_REQUEST_ID = "x-fal-webhook-request-id"
H_USER_ID = "x-fal-webhook-user-id"
H_TIMESTAMP = "x-fal-webhook-timestamp"
H_SIGNATURE = "x-fal-webhook-signature"


class WebhookRejected(Exception):
    """The call is not a genuine, fresh, well-formed fal webhook (answer 401/400)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WrongUser(WebhookRejected):
    """Genuinely signed by fal, but for another fal account (answer 403): anyone with a fal
    key can point their own jobs' webhooks at this URL."""


class JwksUnavailable(WebhookRejected):
    """The signing keys could not be fetched: not the caller's fault (answer 503 so fal
    retries the delivery later)."""


@dataclass(frozen=True)
class WebhookPayload:
    request_id: str
    gateway_request_id: str | None
    status: str  # "OK" | "ERROR"
    error: str | None
    payload: dict[str, Any] = field(default_factory=dict)


def _b64url_decode(value: str) -> bytes:
    """base64url with or without '=' padding (fal's JWKS pads)."""
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _public_keys(jwks: Any) -> list[Ed25519PublicKey]:
    keys = []
    for jwk in jwks.get("keys", []) if isinstance(jwks, dict) else []:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("x"), str):
            continue
        if jwk.get("kty", "OKP") != "OKP" or jwk.get("crv", "Ed25519") != "Ed25519":
            continue
        try:
            keys.append(Ed25519PublicKey.from_public_bytes(_b64url_decode(jwk["x"])))
        except (ValueError, binascii.Error):
            continue
    return keys


class FalWebhookVerifier:
    def __init__(
        self,
        jwks_url: str,
        http: httpx.AsyncClient | None = None,
        cache_ttl: float = 24 * 3600,
        min_refetch_interval: float = 60.0,
        user_id: str | None = None,
    ) -> None:
        self.jwks_url = jwks_url
        self.user_id = user_id
        self.cache_ttl = cache_ttl
        self.min_refetch_interval = min_refetch_interval
        self._http = http
        self._own_http = http is None
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at: float | None = None  # when the cached keys were fetched
        self._attempted_at: float | None = None  # last fetch attempt, successful or not
        self._lock = asyncio.Lock()

    async def verify(
        self, headers: Mapping[str, str], body: bytes, now: float | None = None
    ) -> WebhookPayload:
        now = time.time() if now is None else now
        h = {k.lower(): v for k, v in headers.items()}
        request_id, user_id, timestamp, signature = (
            h.get(H_REQUEST_ID),
            h.get(H_USER_ID),
            h.get(H_TIMESTAMP),
            h.get(H_SIGNATURE),
        )
        if not (request_id and user_id and timestamp and signature):
            raise WebhookRejected("missing X-Fal-Webhook-* headers")
        try:
            sent_at = int(timestamp)
        except ValueError:
            raise WebhookRejected("bad timestamp") from None
        if abs(now - sent_at) > TIMESTAMP_TOLERANCE:
            raise WebhookRejected("timestamp outside the 5-minute window")
        try:
            sig = bytes.fromhex(signature)
        except ValueError:
            raise WebhookRejected("signature is not hex") from None
        if len(sig) != 64:
            raise WebhookRejected("signature has the wrong length")
        message = "\n".join(
            [request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]
        ).encode()

        verified = self._verifies(await self._current_keys(now), sig, message) or (
            await self._refetch(now) and self._verifies(self._keys, sig, message)
        )
        if not verified:
            raise WebhookRejected("signature does not verify")
        # After the signature, so that only fal's own calls learn that the account differs.
        if self.user_id and user_id != self.user_id:
            raise WrongUser(f"signed for fal user {user_id!r}, not FAL_USER_ID")
        return self._parse(request_id, body)

    @staticmethod
    def _verifies(keys: list[Ed25519PublicKey], sig: bytes, message: bytes) -> bool:
        for key in keys:
            try:
                key.verify(sig, message)
                return True
            except InvalidSignature:
                continue
        return False

    @staticmethod
    def _parse(request_id: str, body: bytes) -> WebhookPayload:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise WebhookRejected("body is not JSON") from None
        if not isinstance(data, dict):
            raise WebhookRejected("body is not a JSON object")
        if data.get("request_id") != request_id:
            raise WebhookRejected("request id in body and header differ")
        status = data.get("status")
        if status not in ("OK", "ERROR"):
            raise WebhookRejected(f"unknown status {status!r}")
        payload = data.get("payload")
        error = data.get("error")
        if error is None and status == "ERROR":
            error = data.get("payload_error")
        gateway = data.get("gateway_request_id")
        return WebhookPayload(
            request_id=request_id,
            gateway_request_id=str(gateway) if gateway is not None else None,
            status=status,
            error=str(error) if error is not None else None,
            payload=payload if isinstance(payload, dict) else {},
        )

    async def _current_keys(self, now: float) -> list[Ed25519PublicKey]:
        fresh = self._fetched_at is not None and now - self._fetched_at < self.cache_ttl
        if not fresh:
            await self._refetch(now, required=not self._keys)
        return self._keys

    async def _refetch(self, now: float, required: bool = False) -> bool:
        """Fetch the JWKS unless it was tried within min_refetch_interval. Returns whether
        new keys were loaded. With `required`, a failure with no keys at all raises."""
        async with self._lock:
            last = self._attempted_at
            if last is not None and abs(now - last) < self.min_refetch_interval:
                if required and not self._keys:
                    raise JwksUnavailable("JWKS unavailable")
                return False
            self._attempted_at = now
            try:
                keys = _public_keys(await self._fetch())
            except (httpx.HTTPError, ValueError) as exc:
                if required and not self._keys:
                    raise JwksUnavailable(f"JWKS fetch failed: {exc!r}") from exc
                return False
            if not keys:
                if required and not self._keys:
                    raise JwksUnavailable("JWKS has no Ed25519 keys")
                return False
            self._keys, self._fetched_at = keys, now
            return True

    async def _fetch(self) -> Any:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0)
        response = await self._http.get(self.jwks_url)
        response.raise_for_status()
        return response.json()

    async def aclose(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.aclose()
