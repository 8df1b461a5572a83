"""A stand-in SurrealDB server for tests: the SDK's own embedded engine behind the RPC
protocol that the SDK's `ws://` client speaks.

No `surreal` binary can be installed on these machines, yet multi-process tests need a
database server that several processes share. This is a test double like moto for S3,
never a way to run the product (production runs `surreal start` or SurrealDB on TiKV, and
`SURREALDB_TEST_URL` points the same tests at a real server wherever one exists).

    python -m tests.fakes.surreal_server --host 127.0.0.1 --port 0 [--path DIR]
                                         [--user root --pass root]

binds (port 0: a free port), prints one line `READY ws://HOST:PORT/rpc` and serves until
SIGTERM or SIGINT. With `--path` the data lives in `surrealkv://DIR`, else in memory.

How it answers. The WebSocket at `/rpc` speaks CBOR in binary frames (subprotocol "cbor",
which is what the SDK offers; text/JSON frames are refused). Each request frame is handed
to the engine's own RPC entry point (`AsyncEmbeddedDB.execute`, the one the SDK's embedded
connection uses), so results, SurrealDB's CBOR tags and statement errors (THROW gives
"An error occurred: <text>") are byte for byte what an embedded connection gets. Errors
the engine raises (parse errors, unknown methods) become `{"id", "error": {"code",
"message"}}` with the codes of a SurrealDB 2.x server (-32000 "There was a problem with
the database: …", -32601 "Method not found").

Strictly one request at a time, across all connections (one asyncio.Lock): this engine
LOSES UPDATES under concurrent transactions (200 concurrent `n += 1` transactions ended at
167-198 with no error), so serialising is the point. Each connection keeps its own state,
applied under the lock before its request runs:
- `use`: its namespace/database (the engine is switched to them). Until a connection has
  chosen both, its requests run on a second, empty in-memory engine, so it sees no data,
  as on a server ("Specify a namespace to use"). A `USE` statement inside a query lasts
  for that query only.
- `let`/`unset`: its variables, merged under each `query`'s own variables.
- `signin`: root credentials (`--user`/`--pass`) give a token; anything else fails with
  "There was a problem with authentication". Requests before signin are allowed, as on
  `surreal start --unauthenticated` (the app signs in only when SURREALDB_USER is set).
  `authenticate` accepts tokens this server issued; `invalidate` forgets the sign-in.
Not served: live queries (`live` is refused as on a server without them; a `LIVE SELECT`
inside a query returns an id but never notifies), sessions and client-side transactions
(`attach`, `begin`, … are "Method not found", as on 2.x servers).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import secrets
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from surrealdb._surrealdb_ext import AsyncEmbeddedDB
from surrealdb.data.cbor import decode, encode
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

AUTH_FAILED = "There was a problem with the database: There was a problem with authentication"
_CODES = {"Parse error": -32700, "Invalid request": -32600, "Method not found": -32601,
          "Invalid params": -32602}


def rpc_error(request_id: Any, message: str) -> dict[str, Any]:
    return {"id": request_id, "error": {"code": _CODES.get(message, -32000), "message": message}}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Session:
    """What one WebSocket connection has chosen: namespace, database, variables, sign-in."""

    ns: str | None = None
    db: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    token: str | None = None


class StandIn:
    def __init__(self, url: str = "mem://", user: str = "root", password: str = "root"):
        self.engine = AsyncEmbeddedDB(url)
        self.blank = AsyncEmbeddedDB("mem://")  # for connections that chose no database
        self.user, self.password = user, password
        self.lock = asyncio.Lock()
        self.tokens: set[str] = set()
        self.pending: set[asyncio.Task[None]] = set()  # requests being answered

    async def open(self) -> None:
        await self.engine.connect()
        await self.blank.connect()

    async def close(self) -> None:
        async with self.lock:
            for engine in (self.engine, self.blank):
                with contextlib.suppress(Exception):
                    await engine.close()

    async def handle(self, ws: ServerConnection) -> None:
        session = Session()
        try:
            async for frame in ws:
                if isinstance(frame, str):
                    await ws.close(1003, "this server speaks CBOR in binary frames")
                    return
                task = asyncio.create_task(self._answer(ws, session, frame))
                self.pending.add(task)
                task.add_done_callback(self.pending.discard)
        except ConnectionClosed:
            pass  # requests already read still run (a cancelled one could outlive the lock)

    async def _answer(self, ws: ServerConnection, session: Session, frame: bytes) -> None:
        try:
            request = decode(frame)
            assert isinstance(request, dict)
        except Exception:
            reply: bytes = encode(rpc_error(None, "Parse error"))
        else:
            async with self.lock:  # one request at a time: the whole point of this server
                try:
                    reply = await self._run(session, request, frame)
                except RuntimeError as exc:  # how the engine reports RPC-level errors
                    reply = encode(rpc_error(request.get("id"), str(exc)))
                except (LookupError, TypeError, ValueError):  # malformed params
                    reply = encode(rpc_error(request.get("id"), "Invalid params"))
        with contextlib.suppress(ConnectionClosed):
            await ws.send(reply)

    async def _run(self, s: Session, request: dict[str, Any], frame: bytes) -> bytes:
        request_id, method = request.get("id"), request.get("method")
        params = request.get("params") or []
        result: Any = None
        if method == "use":
            ns, db = (list(params) + [None, None])[:2]
            s.ns = ns if ns is not None else s.ns  # NONE leaves a choice as it was
            s.db = db if db is not None else s.db
        elif method == "let":
            s.vars[str(params[0])] = params[1]
        elif method == "unset":
            for name in params:
                s.vars.pop(str(name), None)
        elif method == "signin":
            creds = params[0] if params and isinstance(params[0], dict) else {}
            if (set(creds) != {"user", "pass"} or creds["user"] != self.user
                    or creds["pass"] != self.password):
                raise RuntimeError(AUTH_FAILED)
            s.token = result = self._new_token()
        elif method == "authenticate":
            if not params or params[0] not in self.tokens:
                raise RuntimeError(AUTH_FAILED)
            s.token = params[0]
        elif method == "invalidate":
            s.token = None
        elif method == "live":
            raise RuntimeError("Live Query was made, but is not supported")
        else:
            if method == "query" and s.vars:
                query_vars = params[1] if len(params) > 1 and params[1] else {}
                frame = encode({**request, "params": [params[0], {**s.vars, **query_vars}]})
            return await (await self._engine_for(s)).execute(frame)
        return encode({"id": request_id, "result": result})

    async def _engine_for(self, s: Session) -> AsyncEmbeddedDB:
        if s.ns is None or s.db is None:
            return self.blank
        # Every time: a `USE` statement inside a query moves the engine's session too.
        await self.engine.execute(encode({"id": "use", "method": "use", "params": [s.ns, s.db]}))
        return self.engine

    def _new_token(self) -> str:
        header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        claims = _b64(json.dumps({"ID": self.user, "jti": secrets.token_hex(8)}).encode())
        token = f"{header}.{claims}.{_b64(secrets.token_bytes(16))}"
        self.tokens.add(token)
        return token


def _only_rpc(connection: ServerConnection, request: Request) -> Response | None:
    if request.path.split("?")[0] != "/rpc":
        return connection.respond(404, "Not Found\n")
    return None


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--path", help="keep data in surrealkv://PATH (default: memory)")
    parser.add_argument("--user", default="root")
    parser.add_argument("--pass", dest="password", default="root")
    args = parser.parse_args(argv)

    standin = StandIn(f"surrealkv://{args.path}" if args.path else "mem://",
                      args.user, args.password)
    await standin.open()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with serve(standin.handle, args.host, args.port, subprotocols=["cbor"],
                         process_request=_only_rpc, max_size=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            print(f"READY ws://{args.host}:{port}/rpc", flush=True)
            await stop.wait()
    finally:
        await standin.close()


if __name__ == "__main__":
    from app.db.process_exit import exit_now

    asyncio.run(main(sys.argv[1:]))
    exit_now(0)  # the engine is closed and its data written
