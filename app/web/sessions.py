"""Server-side sessions: Litestar's server-side session middleware with a store in
SurrealDB, so that every app process sees the same sessions and logging out ends a session
everywhere at once. The cookie holds only a random id.

Two changes to Litestar's backend, both about cost and safety rather than behaviour:
- it writes the session to the store on every response, and creates one for every
  anonymous visitor; here a session is written only when its data changed, and an empty
  one is never stored;
- signing in must not keep an id the browser had before (session fixation): `begin()`
  asks for a fresh id, and the old record is deleted."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.middleware.session.server_side import (
    ServerSideSessionBackend,
    ServerSideSessionConfig,
)
from litestar.stores.base import Store
from litestar.types import Empty, Message, ScopeSession
from litestar.utils.dataclass import extract_dataclass_items

from app.db import sessions as sessions_db
from app.db.connection import Database
from app.web.auth import services_of

STORE_NAME = "sessions"
COOKIE = "reelforge_session"
_LOADED = "reelforge.session_loaded"  # scope keys: the data as read, and "new id please"
_ROTATE = "reelforge.session_rotate"


class DatabaseSessionStore(Store):
    """A Litestar store over the `session` table. The database is attached in the app's
    lifespan (it does not exist when the app is built)."""

    def __init__(self) -> None:
        self.db: Database | None = None

    def _db(self) -> Database:
        if self.db is None:
            raise RuntimeError("the session store has no database yet")
        return self.db

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None
                  ) -> None:
        text = value.decode() if isinstance(value, bytes) else value
        data = json.loads(text)
        seconds = int(expires_in.total_seconds() if isinstance(expires_in, timedelta)
                      else expires_in or 14 * 24 * 3600)
        await sessions_db.put(self._db(), key, text, data.get("uid"), data.get("ua"), seconds)

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        seconds = (int(renew_for.total_seconds()) if isinstance(renew_for, timedelta)
                   else renew_for)
        data = await sessions_db.get(self._db(), key, seconds)
        return data.encode() if data is not None else None

    async def delete(self, key: str) -> None:
        await sessions_db.delete(self._db(), key)

    async def delete_all(self) -> None:
        await self._db().write("DELETE session")

    async def exists(self, key: str) -> bool:
        return await self.get(key) is not None

    async def expires_in(self, key: str) -> int | None:
        return None  # not needed by the session middleware


class SessionBackend(ServerSideSessionBackend):
    async def load_from_connection(
            self, connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any]:
        data = await super().load_from_connection(connection)
        # Litestar types the scope as a closed TypedDict; ASGI scopes are open dicts.
        connection.scope[_LOADED] = dict(data)  # type: ignore[literal-required]
        return data

    async def store_in_message(self, scope_session: ScopeSession, message: Message,
                               connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        scope = connection.scope
        loaded = scope.get(_LOADED) or {}
        rotate = bool(scope.get(_ROTATE))
        cookie_id = connection.cookies.get(self.config.key)
        if cookie_id == "null":
            cookie_id = None
        if scope_session is not Empty and scope_session == loaded and not rotate:
            return  # unchanged: nothing to write, the browser keeps its cookie
        store = self.config.get_store_from_app(scope["app"])
        headers = MutableScopeHeaders.from_message(message)
        params = dict(extract_dataclass_items(self.config, exclude_none=True,
                                              include=Cookie.__dict__.keys()))
        if cookie_id and (rotate or scope_session is Empty or not scope_session):
            await self.delete(cookie_id, store=store)
        if scope_session is Empty or not scope_session:
            if cookie_id:
                headers.add("Set-Cookie", Cookie(value="null", key=self.config.key, expires=0,
                                                 **params).to_header(header=""))
            return
        session_id = (self.generate_session_id() if rotate or not cookie_id else cookie_id)
        await self.set(session_id, self.serialize_data(scope_session, scope), store=store)
        headers.add("Set-Cookie", Cookie(value=session_id, key=self.config.key,
                                         **params).to_header(header=""))


@dataclass
class SessionConfig(ServerSideSessionConfig):
    _backend_class = SessionBackend


def begin(request: Request[Any, Any, Any], user_id: str) -> None:
    """Sign `user_id` in on this request: a new session id, whatever the browser had."""
    request.scope[_ROTATE] = True  # type: ignore[literal-required]  # an open dict, as above
    request.set_session({"uid": user_id,
                         "ua": (request.headers.get("user-agent") or "")[:300]})


def end(request: Request[Any, Any, Any]) -> None:
    """Sign out on this request: the record goes, and so do this session's open streams
    on this process (other processes end theirs when the change feed tells them)."""
    session_id = current_id(request)
    request.clear_session()
    if session_id:
        end_streams(request, [sessions_db.key_of(session_id)])


def end_streams(request: Request[Any, Any, Any], keys: list[str]) -> None:
    broker = services_of(request).broker
    for key in keys:
        broker.end_session(key)


def current_id(request: Request[Any, Any, Any]) -> str | None:
    value = request.cookies.get(COOKIE)
    return value if value and value != "null" else None
