"""The Account page: credits and history, storage used of the quota, the person's
signed-in sessions (end one, or all but this one) and a password change, which also ends
every other session."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromQuery, URLEncodedBody
from litestar.response import Redirect, Template

from app.db import jobs as jobs_db
from app.db import ledger as ledger_db
from app.db import library as library_db
from app.db import sessions as sessions_db
from app.db import users as users_db
from app.db.records import User
from app.jobs.states import ACTIVE
from app.web import sessions
from app.web.auth import (
    MAX_PASSWORD,
    MIN_PASSWORD,
    current_user,
    hash_password,
    services_of,
    verify_password,
)
from app.web.responses import human_bytes

NOTICES = {
    "ended": "Signed out of your other sessions.",
    "ended-one": "That session is signed out.",
    "password": "Password changed. Your other sessions are signed out.",
}


def device_name(user_agent: str | None) -> str:
    """'Chrome on Linux' from a user agent, good enough to recognise a session by."""
    ua = user_agent or ""
    browser = next((name for token, name in (
        ("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
        ("Chromium/", "Chromium"), ("Safari/", "Safari"), ("curl/", "curl"),
        ("python-httpx", "a program (httpx)"), ("python-requests", "a program (requests)"),
    ) if token in ua), None)
    system = next((name for token, name in (
        ("Android", "Android"), ("iPhone", "iPhone"), ("iPad", "iPad"), ("Windows", "Windows"),
        ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"),
    ) if token in ua), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "Unknown device"


class AccountController(Controller):
    path = "/account"
    include_in_schema = False  # an HTML page and its forms; /schema documents the JSON API

    async def _render(self, request: Request[Any, Any, Any], user: User, *, status: int = 200,
                      error: str | None = None, notice: str | None = None,
                      before: str | None = None) -> Template:
        db = services_of(request).db
        user_id = user.id
        here = sessions.current_id(request)
        current = sessions_db.key_of(here) if here else None
        listed = [{"key": s.key, "created_at": s.created_at, "last_seen": s.last_seen,
                   "device": device_name(s.user_agent), "current": s.key == current}
                  for s in await sessions_db.list_for(db, user_id)]
        listed.sort(key=lambda row: not row["current"])  # this one first
        used = await library_db.used_bytes(db, user_id)
        quota = services_of(request).settings.storage_quota
        storage = {"used": human_bytes(used), "quota": human_bytes(quota),
                   "percent": min(100, used * 100 // quota) if quota else 100,
                   "full": used >= quota}
        try:  # the history's "Older" link carries the last entry's time
            cursor = datetime.fromisoformat(before) if before else None
        except ValueError:
            cursor = None
        history = await ledger_db.history(db, user_id, before=cursor)
        rows = history.rows
        return Template(template_name="pages/account.html", status_code=status, context={
            "user": user, "active_nav": "account",
            "ledger": rows, "paged": cursor is not None,
            "older": rows[-1].created_at.isoformat() if history.more else None,
            # What running jobs hold, named: the held credits are theirs until they end.
            "holds": await jobs_db.list_for(db, user_id, sorted(s.value for s in ACTIVE),
                                            limit=50),
            "available": user.available, "sessions": listed,
            "password_error": error, "notice": notice, "storage": storage,
            "min_password": MIN_PASSWORD,
        })

    @get("/", name="account")
    async def account(self, request: Request[Any, Any, Any], notice: FromQuery[str | None] = None,
                      before: FromQuery[str | None] = None) -> Template | Redirect:
        user = await current_user(request)
        if user is None:
            return Redirect("/login?next=/account")
        return await self._render(request, user, notice=NOTICES.get(notice or ""),
                                  before=before)

    @post("/sessions/end-others")
    async def end_others(self, request: Request[Any, Any, Any]) -> Redirect:
        user = await current_user(request)
        if user is None:
            return Redirect("/login?next=/account", status_code=303)
        sessions.end_streams(request, await sessions_db.end_others(
            services_of(request).db, user.id, sessions.current_id(request)))
        return Redirect("/account?notice=ended", status_code=303)

    @post("/sessions/end")
    async def end_one(
        self, request: Request[Any, Any, Any],
        data: URLEncodedBody[dict[str, str]],
    ) -> Redirect:
        user = await current_user(request)
        if user is None:
            return Redirect("/login?next=/account", status_code=303)
        key = (data.get("key") or "")[:64]
        if key:
            sessions.end_streams(request, await sessions_db.end_one(
                services_of(request).db, user.id, key))
        return Redirect("/account?notice=ended-one", status_code=303)

    @post("/password")
    async def change_password(
        self, request: Request[Any, Any, Any],
        data: URLEncodedBody[dict[str, str]],
    ) -> Template | Redirect:
        user = await current_user(request)
        if user is None:
            return Redirect("/login?next=/account", status_code=303)
        current = (data.get("current_password") or "")[:MAX_PASSWORD]
        new = data.get("new_password") or ""
        if not await verify_password(user.password_hash, current):
            return await self._render(request, user, status=400,
                                      error="Your current password is not right.")
        if not MIN_PASSWORD <= len(new) <= MAX_PASSWORD:
            return await self._render(
                request, user, status=400,
                error=f"Use {MIN_PASSWORD} to {MAX_PASSWORD} characters for the new password.")
        db = services_of(request).db
        user_id = user.id
        await users_db.set_password(db, user_id, await asyncio.to_thread(hash_password, new))
        # Every other session ends; this one continues under a fresh id.
        sessions.end_streams(request, await sessions_db.end_others(
            db, user_id, sessions.current_id(request)))
        sessions.begin(request, user_id)
        return Redirect("/account?notice=password", status_code=303)
