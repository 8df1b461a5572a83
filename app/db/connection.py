"""The SurrealDB connection: opening, the single-process lock, and running queries.

Two facts shape this module (both measured on the embedded engine, SDK 2.0):
- Concurrent transactions on one embedded engine can lose updates: 200 concurrent
  `UPDATE user:a SET n += 1` transactions ended with n = 196..198 and no error. So on
  embedded engines every write runs under one asyncio lock; reads stay concurrent.
- A server engine answers concurrent writers to one record with a retryable "read or
  write conflict"; those are retried with jittered backoff. Errors raised on purpose with
  `THROW` are never retried: they come back as `Thrown` with the thrown text.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import surrealdb
from filelock import FileLock, Timeout
from surrealdb.errors import ServerError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)
from websockets.exceptions import WebSocketException

from app.settings import Settings

_THROWN = re.compile(r"An error occurred: (.*)$", re.S)
_CONFLICT = "can be retried"
# Seconds: a hung server must not hang a request or the driver forever.
QUERY_TIMEOUT = 60.0
# Work that grows with the store and is meant to take long gets this limit instead: applying
# the schema (its OVERWRITE indexes are rebuilt: 55 s at 50,000 jobs, 384,000 records) and a
# backup's read of every table. Past 60 s either failed every start and every backup of a
# large store; a hung server still ends them.
LONG_QUERY_TIMEOUT = 1800.0
CONNECT_TIMEOUT = 10.0  # opening a server connection: connect, sign in, `use`


class DatabaseError(Exception):
    """A query failed for a reason other than THROW."""


class Conflict(DatabaseError):
    """A transaction conflict; retrying the whole transaction may succeed."""


class ConnectionLost(DatabaseError):
    """The server connection dropped mid-query; the next query reconnects."""


class Thrown(Exception):
    """A THROW in a query: `code` is the thrown text (e.g. "insufficient_credits")."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


class DatabaseLocked(RuntimeError):
    pass


class Database:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.url = settings.db_url
        self.embedded = settings.is_embedded
        self._conn: Any = None
        self._file_lock: FileLock | None = None
        self._write_lock = asyncio.Lock()
        # Requests sent, by kind (a request may hold several statements): /metrics shows
        # them, and the soak divides writes by jobs (on the embedded engine memory grows
        # with every write, docs/BENCHMARKS.md §6).
        self.reads = 0
        self.writes = 0
        self._wanted = False  # connect() was called and close() was not
        self._reconnecting = asyncio.Lock()

    async def connect(self) -> None:
        self._wanted = True
        if self.url.startswith("surrealkv://"):
            self._lock_data_dir(Path(self.url.removeprefix("surrealkv://")))
        conn: Any = surrealdb.AsyncSurreal(self.url)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await conn.connect()
                if self.settings.surrealdb_user and not self.embedded:
                    await conn.signin(
                        {"username": self.settings.surrealdb_user,
                         "password": self.settings.surrealdb_pass or ""}
                    )
                await conn.use(self.settings.surrealdb_ns, self.settings.surrealdb_db)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close()
            self._release_lock()
            raise
        # Only a connection signed in and on its namespace is shared: a query sent on one
        # still opening would fail ("Specify a namespace to use"), and one whose `use`
        # failed would fail every query after it, with nothing to open it again.
        self._conn = conn

    def _lock_data_dir(self, db_path: Path) -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(db_path) + ".lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise DatabaseLocked(
                f"The embedded database at {db_path} is already open in another process "
                "(a running `serve`?). Stop that process first, or run this command "
                "against a SurrealDB server with DATABASE_URL=ws://…"
            ) from None
        self._file_lock = lock

    def _release_lock(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None

    async def close(self) -> None:
        self._wanted = False
        if self._conn is not None:
            try:
                await self._conn.close()
            finally:
                self._conn = None
                self._release_lock()

    async def read(self, sql: str, vars: dict[str, Any] | None = None, *,
                   timeout: float | None = None) -> list[Any]:
        """Run statements that only read; returns each statement's result. `timeout`
        (seconds) replaces QUERY_TIMEOUT for this query."""
        self.reads += 1
        return await self._retrying(sql, vars, timeout)

    async def write(self, sql: str, vars: dict[str, Any] | None = None, *,
                    timeout: float | None = None) -> list[Any]:
        """Run statements that write (usually one `BEGIN; …; COMMIT;` transaction)."""
        self.writes += 1
        if not self.embedded:
            return await self._retrying(sql, vars, timeout)
        async with self._write_lock:
            return await self._retrying(sql, vars, timeout)

    @contextlib.asynccontextmanager
    async def writes_held(self) -> AsyncIterator[None]:
        """No write of this process runs inside the block. On an embedded engine this
        process is the only writer (the store is locked), so nothing changes meanwhile: a
        consistent read for a backup. A server's other clients are not held."""
        if not self.embedded:
            yield
            return
        async with self._write_lock:
            yield

    async def read_one(self, sql: str, vars: dict[str, Any] | None = None) -> Any:
        """The last statement's result (the common single-statement case)."""
        return (await self.read(sql, vars))[-1]

    async def write_one(self, sql: str, vars: dict[str, Any] | None = None) -> Any:
        return (await self.write(sql, vars))[-1]

    async def _retrying(self, sql: str, vars: dict[str, Any] | None,
                        timeout: float | None = None) -> list[Any]:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Conflict),
            wait=wait_random_exponential(multiplier=0.005, max=0.5),
            stop=stop_after_attempt(12),
            reraise=True,
        ):
            with attempt:
                return await self._run(sql, vars, timeout)
        raise AssertionError("unreachable")

    async def _reconnect(self) -> None:
        """A server connection that dropped is opened again for the next query (the SDK's
        ws:// client does not reconnect by itself). Callers waiting here meanwhile use the
        one it opens. A server that cannot be reached is a ConnectionLost, as a drop is."""
        async with self._reconnecting:
            if self._conn is None and self._wanted and not self.embedded:
                try:
                    await self.connect()
                except (OSError, TimeoutError, WebSocketException, ServerError, KeyError) as exc:
                    raise ConnectionLost(f"cannot reach the database: {exc!r}") from exc

    def _alive(self, conn: Any) -> bool:
        """Whether the SDK still reads `conn`'s answers. Its reader task ends when the
        socket closes (or on a frame it cannot decode) and fails the queries waiting; a
        query sent after that would wait for an answer nobody reads."""
        reader = getattr(conn, "recv_task", None)
        return self.embedded or reader is None or not reader.done()

    async def _drop(self, conn: Any) -> None:
        """Stop sharing `conn` (the next query opens a new one) and close it."""
        if self._conn is conn:
            self._conn = None
            with contextlib.suppress(Exception):
                await conn.close()

    async def _run(self, sql: str, vars: dict[str, Any] | None,
                   timeout: float | None = None) -> list[Any]:
        if self._conn is not None and not self._alive(self._conn):
            await self._drop(self._conn)
        if self._conn is None:
            await self._reconnect()
        if self._conn is None:
            raise DatabaseError("database is not connected")
        conn = self._conn
        # On a server connection the request runs in a task of its own that is never
        # cancelled: the SDK's reader sets each answer on the request's future, and one
        # cancelled at that moment (its caller cancelled, or out of time) ended the reader
        # and failed every query in flight on the connection
        # (tests/integration/test_database_reconnect.py). An embedded query is awaited
        # as it is: its write must end before the write lock is let go.
        call = conn.query_raw(sql, vars or {})
        request = None if self.embedded else asyncio.ensure_future(call)
        try:
            async with asyncio.timeout(QUERY_TIMEOUT if timeout is None else timeout):
                response = await (call if request is None else asyncio.shield(request))
        except RuntimeError as exc:  # the embedded engine raises parse errors this way
            raise DatabaseError(str(exc)) from exc
        except (OSError, KeyError, TimeoutError, WebSocketException) as exc:
            # The query's outcome is unknown, so it is not repeated here. The connection
            # dropped (the SDK reports a request cut off as a KeyError): the next query
            # reconnects. A query that only ran out of time leaves the connection to the
            # others in flight on it; closing it would fail them all.
            if not self.embedded and (not isinstance(exc, TimeoutError)
                                      or not self._alive(conn)):
                await self._drop(conn)
            raise ConnectionLost(f"lost the connection to the database: {exc!r}") from exc
        finally:
            if request is not None and not request.done():  # nobody reads its answer now
                request.add_done_callback(_unread)
        if "error" in response:
            error = response["error"]
            raise DatabaseError(str(error.get("message", error) if isinstance(error, dict)
                                    else error))
        statements = response.get("result") or []
        errors = [s["result"] for s in statements if s.get("status") == "ERR"]
        for message in errors:
            match = _THROWN.search(str(message))
            if match:
                raise Thrown(match.group(1).strip())
        for message in errors:
            if _CONFLICT in str(message):
                raise Conflict(str(message))
        if errors:
            raise DatabaseError("; ".join(str(m) for m in errors))
        return [s.get("result") for s in statements]


def _unread(request: asyncio.Future[Any]) -> None:
    """The answer to a request nobody waits for any more: read, so that its error (if any)
    is not reported as never retrieved."""
    if not request.cancelled():
        request.exception()


def rid(table: str, key: str | list[str]) -> surrealdb.RecordID:
    """The record `table:key`; a list makes an array key (`idempotency_key:[owner, key]`)."""
    return surrealdb.RecordID(table, key)
