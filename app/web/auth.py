"""Accounts: password hashing, the signed-in person, and slowing down guessing."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from litestar import Request
from litestar.exceptions import NotAuthorizedException

from app.db import throttle as throttle_db
from app.db import users as users_db
from app.db.connection import Database
from app.db.records import User
from app.events.notifier import Notifier
from app.jobs.batches import BatchService
from app.jobs.service import JobService
from app.services import Services

T = TypeVar("T")

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
    """Limits sign-in attempts per email and per client address, counted in the database
    (so every process counts together) and *before* the password is checked (so a burst
    of concurrent guesses gets at most `limit` checks). After `free` attempts in the
    window, each further one waits longer (up to 5 s); at `limit` it is refused."""

    def __init__(self, db: Database, free: int = 3, limit: int = 20, window: float = 900.0):
        self.db = db
        self.free, self.limit, self.window = free, limit, window

    def delay_for(self, worst: int) -> float:
        return 0.0 if worst < self.free else min(5.0, 0.25 * 2 ** (worst - self.free))

    async def attempt(self, *keys: str) -> float | None:
        """Count this attempt; the seconds to wait before checking it, or None when it
        must be refused (then it was not counted)."""
        worst = await throttle_db.reserve(self.db, list(keys), self.limit, self.window)
        return None if worst is None else self.delay_for(worst)

    async def succeeded(self, account_key: str, *other_keys: str) -> None:
        """The password was right: the account's count starts over, and the attempt is
        not held against the client's address."""
        await throttle_db.clear(self.db, [account_key])
        if other_keys:
            await throttle_db.give_back(self.db, list(other_keys))


def services_of(request: Request[Any, Any, Any]) -> Services:
    services: Services = request.app.state.services
    return services


def _wired(part: T | None, name: str) -> T:
    """A part of the services that is optional on the dataclass only because
    open_services() sets it after construction: it is always there once requests arrive."""
    if part is None:
        raise RuntimeError(f"services.{name} is not set: open_services() wires it")
    return part


def job_service(request: Request[Any, Any, Any]) -> JobService:
    return _wired(services_of(request).jobs, "jobs")


def batch_service(request: Request[Any, Any, Any]) -> BatchService:
    return _wired(services_of(request).batches, "batches")


def notifier_of(request: Request[Any, Any, Any]) -> Notifier:
    return _wired(services_of(request).notifier, "notifier")


def login_throttle(request: Request[Any, Any, Any]) -> LoginThrottle:
    throttle: LoginThrottle = request.app.state.login_throttle  # set in the app's lifespan
    return throttle


async def current_user(request: Request[Any, Any, Any]) -> User | None:
    """The signed-in person, or None. The session holds only the user id."""
    user_id = (request.session or {}).get("uid") if request.scope.get("session") else None
    if not user_id:
        return None
    return await users_db.by_id(services_of(request).db, user_id)


async def require_user(request: Request[Any, Any, Any]) -> User:
    user = await current_user(request)
    if user is None:
        raise NotAuthorizedException("Sign in first")
    return user

