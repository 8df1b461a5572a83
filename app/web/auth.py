"""Accounts: password hashing, the signed-in person, and slowing down guessing."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from litestar import Request
from litestar.exceptions import NotAuthorizedException

from app.db import users as users_db
from app.services import Services

_hasher = PasswordHasher()
# A fixed hash to verify against when the email is unknown, so both cases cost the same.
_DUMMY_HASH = _hasher.hash("not-a-real-password")

MIN_PASSWORD = 8
MAX_PASSWORD = 256


def hash_password(password: str) -> str:
    return _hasher.hash(password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


class LoginThrottle:
    """Counts recent failures per email and per client address. After a few, each further
    attempt waits longer (up to 5 s), and past a limit it is refused for a while."""

    def __init__(self, free: int = 3, limit: int = 20, window: float = 900.0):
        self.free, self.limit, self.window = free, limit, window
        self._fails: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, key: str) -> list[float]:
        now = time.monotonic()
        times = [t for t in self._fails.get(key, []) if now - t < self.window]
        if times:
            self._fails[key] = times
        else:
            self._fails.pop(key, None)
        return times

    def delay(self, *keys: str) -> float | None:
        """Seconds to wait before checking this attempt; None when it must be refused."""
        worst = max(len(self._recent(k)) for k in keys)
        if worst >= self.limit:
            return None
        return 0.0 if worst < self.free else min(5.0, 0.25 * 2 ** (worst - self.free))

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            self._fails.setdefault(key, []).append(now)
            self._fails.move_to_end(key)
        while len(self._fails) > 50_000:
            self._fails.popitem(last=False)

    def succeeded(self, email_key: str) -> None:
        self._fails.pop(email_key, None)


def services_of(request: Request) -> Services:
    return request.app.state.services


async def current_user(request: Request) -> dict[str, Any] | None:
    """The signed-in person, or None. The session holds only the user id."""
    user_id = (request.session or {}).get("uid") if request.scope.get("session") else None
    if not user_id:
        return None
    return await users_db.by_id(services_of(request).db, user_id)


async def require_user(request: Request) -> dict[str, Any]:
    user = await current_user(request)
    if user is None:
        raise NotAuthorizedException("Sign in first")
    return user


def user_id_of(user: dict[str, Any]) -> str:
    return str(user["id"].id)
