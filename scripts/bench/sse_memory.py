"""SSE capacity: memory per idle /events connection, idle CPU, and event latency.

Starts the app (`python -m app serve`'s code path: uvicorn with its default loop and HTTP
implementation, i.e. uvloop and httptools when installed, as with uvicorn[standard]) in a
subprocess on a throwaway in-memory database, signs up two people over HTTP, and opens N
`/events` connections to it from this process with raw asyncio sockets spread over several
127.0.0.x source addresses. A fresh server for each N and variant. It reports:

* RSS per connection: the server's VmRSS with the N - P idle streams open minus VmRSS just
  before they were opened (after warm-up), divided by N - P;
* idle CPU: the server's user+system CPU time over `--idle-seconds` while all N are open and
  nothing happens but keep-alive pings (and the job driver's idle tick), as % of one core;
* event latency: from sending a job request (submit, then cancel) as the "probe" person to
  the job's event arriving on each of the probe person's P open streams, with the other
  N - P connections (all of the "idle" person) open, and also with none of them open
  ("alone", same server, same run). Measured from the request being sent, it includes the
  request's own work (the state change happens inside it), so it is an upper bound; the
  requests' own round trips are reported beside it;
* fan-out: the same for an event of the idle person to all N - P of their streams: the
  latency to each, and the time until the last one has it;
* shutdown: seconds from SIGTERM to the server process exiting with all N streams open.

Several server variants can be measured in one run (`--variants`), so that they are compared
on the same machine at the same time:

* `app`: the app as it is (app/events/stream.py);
* `stock`: the same broker behind a stock `EventSourceResponse` used the plain way (its own
  ping task, send_timeout, its task group per connection): what the app did before;
* `litestar`: Litestar's own `ServerSentEvent` response, for reference only;
* `floor`: not a stream at all: an `@asgi` route that sends the headers and one event, then
  waits for the client to go: what uvicorn, Litestar and its middleware cost per open
  request. No events, so no latency for it.

`--diagnose` records the server's event-loop stalls and full garbage collections and
attributes them to the phases (it skips the idle-CPU figures, as its watchdog costs CPU).

Example:
    .venv/bin/python scripts/bench/sse_memory.py -n 1000 5000 10000 \\
        --variants app,stock,floor,litestar

Prints a table and writes JSON to bench-results/sse_memory.json (`--json`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import EventStream, open_event_streams  # the benchmarks' one /events reader

ROOT = Path(__file__).resolve().parents[2]
NOFILE = 20_000
PASSWORD = "bench-password-1"  # noqa: S105 (a throwaway account on a throwaway database)
TEMPLATE = "car-commercial"


# --- shared -----------------------------------------------------------------------------
def raise_nofile(want: int = NOFILE) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def loaded_libraries(pid: int) -> dict[str, bool]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {"uvloop": "uvloop" in maps, "httptools": "httptools" in maps}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


# --- the server (subprocess) --------------------------------------------------------------
def serve(variant: str, port: int) -> None:
    """Run the app the way `python -m app serve` does, optionally with another stream."""
    raise_nofile()
    sys.path.insert(0, str(ROOT))
    import app.main

    if variant == "stock":
        app.main.events = _stock_events()
    elif variant == "litestar":
        app.main.events = _litestar_events()
    elif variant == "floor":
        app.main.events = _floor_events()
    elif variant != "app":
        raise SystemExit(f"unknown variant {variant!r}")
    if os.environ.get("SSE_BENCH_DIAGNOSE"):
        _instrument(Path(os.environ["SSE_BENCH_DIAGNOSE"]))
    from app.cli import main

    main(["serve", "--host", "127.0.0.1", "--port", str(port)])


def _instrument(path: Path) -> None:
    """--diagnose: record event-loop stalls over 50 ms and every full (generation 2)
    garbage collection, with wall-clock times, as JSON lines in `path`. (The watchdog
    wakes 20 times a second, so idle CPU is not measured with it.)"""
    import gc

    import app.main

    out = path.open("a", buffering=1)
    started: dict[str, float] = {}

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started["gc"] = time.perf_counter()
        elif info["generation"] == 2:
            ms = (time.perf_counter() - started.get("gc", time.perf_counter())) * 1000
            out.write(json.dumps({"kind": "gc2", "at": time.time(), "ms": round(ms, 1),
                                  "collected": info["collected"]}) + "\n")

    async def watchdog() -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.05)
            lag = (time.perf_counter() - t0 - 0.05) * 1000
            if lag > 50:
                out.write(json.dumps({"kind": "stall", "at": time.time(),
                                      "ms": round(lag, 1)}) + "\n")

    tasks: list[asyncio.Task] = []
    create_app = app.main.create_app

    def create_instrumented(settings=None):
        instance = create_app(settings)
        instance.on_startup.append(
            lambda: tasks.append(asyncio.get_running_loop().create_task(watchdog())))
        return instance

    gc.callbacks.append(on_gc)
    app.main.create_app = create_instrumented


def _stream_source(sub: Any):
    """Reads one subscription whatever the broker's shape (`get()` or `queue.get()`)."""
    return sub.get if hasattr(sub, "get") else sub.queue.get


def _stock_events():
    """The stream as first written: a plain EventSourceResponse with its own ping task,
    send_timeout, and the task group sse-starlette starts per connection (pinging as
    often as the app does, so that the two are compared like for like)."""
    from litestar import asgi
    from sse_starlette import EventSourceResponse, ServerSentEvent
    from starlette.responses import JSONResponse

    from app.events.broker import PING_SECONDS

    @asgi("/events", is_mount=False, include_in_schema=False)
    async def events(scope: Any, receive: Any, send: Any) -> None:
        services = scope["litestar_app"].state.services
        session = scope.get("session") or {}
        user_id = session.get("uid") if isinstance(session, dict) else None
        if not user_id:
            await JSONResponse({"error": "not_signed_in"}, 401)(scope, receive, send)
            return
        broker = services.broker
        sub = broker.subscribe(user_id)
        get = _stream_source(sub)

        async def stream():
            try:
                for ev in await services.notifier.snapshot(user_id):
                    yield ServerSentEvent(data=ev.data, event=ev.event)
                while True:
                    ev = await get()
                    if ev is None:
                        return
                    if not getattr(ev, "event", None):  # the app's own ping marker
                        continue
                    yield ServerSentEvent(data=ev.data, event=ev.event)
            finally:
                broker.unsubscribe(sub)

        response = EventSourceResponse(
            stream(), ping=PING_SECONDS, send_timeout=30,
            headers={"X-Accel-Buffering": "no", "Cache-Control": "no-store"})
        try:
            await response(scope, receive, send)
        finally:
            broker.unsubscribe(sub)

    return events


def _floor_events():
    """The least an open request can cost in this app: headers, one event, then wait."""
    from litestar import asgi

    @asgi("/events", is_mount=False, include_in_schema=False, copy_scope=False)
    async def events(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "more_body": True,
                    "body": b"event: credits\r\ndata: <a id=credits></a>\r\n\r\n"})
        while (await receive())["type"] != "http.disconnect":
            pass

    return events


def _litestar_events():
    """Litestar's own SSE response over the same broker (reference only)."""
    from litestar import Request, get
    from litestar.response import ServerSentEvent, ServerSentEventMessage

    @get("/events", include_in_schema=False,
         signature_namespace={"Request": Request, "ServerSentEvent": ServerSentEvent})
    async def events(request: Request) -> ServerSentEvent:
        services = request.app.state.services
        user_id = request.session.get("uid")
        broker = services.broker
        sub = broker.subscribe(user_id)
        next_event = _stream_source(sub)

        async def stream():
            try:
                for ev in await services.notifier.snapshot(user_id):
                    yield ServerSentEventMessage(data=ev.data, event=ev.event)
                while True:
                    ev = await next_event()
                    if ev is None:
                        return
                    if not getattr(ev, "event", None):
                        yield ServerSentEventMessage(comment="ping")
                        continue
                    yield ServerSentEventMessage(data=ev.data, event=ev.event)
            finally:
                broker.unsubscribe(sub)

        return ServerSentEvent(stream(), headers={"X-Accel-Buffering": "no"})

    return events


# --- the client side ----------------------------------------------------------------------
class Round:
    """One measurement: which frames count, who must see one, and when each did."""

    def __init__(self, match, conns: list[EventStream]):
        self.match = match
        self.waiting = {id(c) for c in conns}
        self.arrivals: list[float] = []
        self.sent = 0.0
        self.done = asyncio.get_running_loop().create_future()
        if not self.waiting:
            self.done.set_result(None)

    def feed(self, conn: EventStream, name: str, data: str, now: float) -> None:
        if id(conn) in self.waiting and self.match(name, data):
            self.waiting.discard(id(conn))
            self.arrivals.append(now)
            if not self.waiting and not self.done.done():
                self.done.set_result(None)


ROUNDS: list[Round] = []  # the measurements under way; every stream's events go to each


def feed_rounds(conn: EventStream, name: str, data: str, now: float) -> None:
    for r in ROUNDS:
        r.feed(conn, name, data, now)


@dataclass
class Client:
    host: str
    port: int
    cookies: dict[str, str] = field(default_factory=dict)
    http: Any = None

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def events_request(self) -> bytes:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return (f"GET /events HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Accept: text/event-stream\r\nCookie: {cookie}\r\n\r\n").encode()


async def signup(base: str, email: str):
    import httpx

    http = httpx.AsyncClient(base_url=base, timeout=30)
    await http.get("/signup")
    r = await http.post("/signup", data={"email": email, "password": PASSWORD,
                                          "_csrf_token": http.cookies.get("csrftoken")})
    if r.status_code != 303:
        raise RuntimeError(f"signup failed: {r.status_code} {r.text[:200]}")
    http.headers["x-csrftoken"] = http.cookies.get("csrftoken")
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (320, 180), (200, 90, 40)).save(buf, "PNG")
    r = await http.post("/api/library", files={"file": ("start.png", buf.getvalue(), "image/png")})
    if r.status_code != 201:
        raise RuntimeError(f"upload failed: {r.status_code} {r.text[:200]}")
    return http, r.json()["key"]


async def open_connections(n: int, port: int, request: bytes, sources: list[str],
                           start: int, batch: int = 200) -> list[EventStream]:
    return await open_event_streams(request, n, port, batch=batch, on_event=feed_rounds,
                                    sources=sources, start=start, retries=4)


async def job_round(http, start_key: str, conns: list[EventStream], timeout: float = 30):
    """Submit a job and cancel it. Returns the latencies in ms from sending each request to
    its event arriving on each of `conns`, and the two requests' own round trips."""
    token = "B" + uuid.uuid4().hex[:10]
    submitted = Round(lambda name, data: name == "jobs" and token in data, conns)
    ROUNDS.append(submitted)
    try:
        submitted.sent = time.perf_counter()
        r = await http.post("/api/templates/video", json={
            "templateSlug": TEMPLATE, "startKey": start_key,
            "variables": {"BRAND": token, "MODEL": "S1"}})
        rtt = [(time.perf_counter() - submitted.sent) * 1000]
        if r.status_code != 202:
            raise RuntimeError(f"submit: {r.status_code} {r.text[:200]}")
        job_id = r.json()["jobId"]
        await asyncio.wait_for(submitted.done, timeout)
    finally:
        ROUNDS.remove(submitted)
    canceled = Round(lambda name, data: name == f"job-{job_id}"
                     and 'data-status="canceled"' in data, conns)
    ROUNDS.append(canceled)
    try:
        canceled.sent = time.perf_counter()
        r = await http.post("/api/templates/video/cancel", params={"jobId": job_id})
        rtt.append((time.perf_counter() - canceled.sent) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"cancel: {r.status_code} {r.text[:200]}")
        await asyncio.wait_for(canceled.done, timeout)
    finally:
        ROUNDS.remove(canceled)
    return ([(t - submitted.sent) * 1000 for t in submitted.arrivals]
            + [(t - canceled.sent) * 1000 for t in canceled.arrivals], rtt)


async def latency(http, start_key: str, conns: list[EventStream], rounds: int) -> dict[str, Any]:
    """`rounds` submit+cancel rounds: event latency and request round-trip percentiles."""
    lat: list[float] = []
    rtt: list[float] = []
    windows = []
    for _ in range(rounds):
        t0 = time.time()
        a, b = await job_round(http, start_key, conns)
        windows.append((t0, time.time()))
        lat += a
        rtt += b
    return {"samples": len(lat), "p50": round(pct(lat, 50), 2), "p95": round(pct(lat, 95), 2),
            "p99": round(pct(lat, 99), 2), "max": round(max(lat), 2),
            "request_p50": round(pct(rtt, 50), 2), "request_p99": round(pct(rtt, 99), 2),
            "_windows": windows}


async def idle_cpu(pid: int, seconds: float) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


async def settle(pid: int, seconds: float = 2.0) -> int:
    await asyncio.sleep(seconds)
    return rss_kib(pid)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/health")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError("server did not become healthy")


async def measure(variant: str, n: int, args) -> dict[str, Any]:
    """One fresh server, N streams: RSS, idle CPU, latency, fan-out, shutdown time."""
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix=f"sse-bench-{variant}-"))
    env = {**os.environ, "DATA_DIR": str(data_dir), "DATABASE_URL": "mem://",
           "VIDEO_PROVIDER": "local", "STORAGE": "local", "SECRET_KEY": "bench-secret",
           "SIGNUP_CREDITS": "100000", "MAX_ACTIVE_JOBS": "50",
           "EVENT_STREAMS_PER_PERSON": str(10**6)}  # all N streams are one person's
    if args.diagnose:
        env["SSE_BENCH_DIAGNOSE"] = str(data_dir / "stalls.jsonl")
    for var in ("FAL_KEY", "PUBLIC_BASE_URL", "ALLOWED_HOSTS"):
        env.pop(var, None)
    log = (data_dir / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", variant, "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    row: dict[str, Any] = {"variant": variant, "connections": n}
    conns: list[EventStream] = []
    try:
        await wait_healthy(base, proc)
        row["server"] = loaded_libraries(proc.pid)
        idle_http, idle_key = await signup(base, "idle@bench.example")
        probe_http, probe_key = await signup(base, "probe@bench.example")
        idle = Client("127.0.0.1", port, dict(idle_http.cookies.items()))
        probe = Client("127.0.0.1", port, dict(probe_http.cookies.items()))
        sources = [f"127.0.0.{i}" for i in range(2, 2 + args.sources)]
        # Warm up every code path once (imports, template compilation, caches).
        warm = await open_connections(20, port, probe.events_request(), sources, 0)
        if variant != "floor":
            await job_round(probe_http, probe_key, warm)
        for c in warm:
            c.transport.close()
        await asyncio.sleep(1.5)
        measured = variant != "floor"  # the floor variant carries no events
        probes = await open_connections(args.probes, port, probe.events_request(), sources, 0)
        phases: dict[str, list[tuple[float, float]]] = {}
        if measured:  # the probe person's latency with no other streams open
            row["latency_alone_ms"] = await latency(probe_http, probe_key, probes, args.rounds)
            phases["latency_alone"] = row["latency_alone_ms"].pop("_windows")
        rss0 = await settle(proc.pid)
        row["rss_before_kib"] = rss0
        if not args.diagnose:
            cpu0 = await idle_cpu(proc.pid, args.idle_seconds)
            row["idle_cpu_pct_without_streams"] = round(cpu0, 2)
        t0 = time.monotonic()
        idles = await open_connections(n - len(probes), port, idle.events_request(), sources,
                                       len(probes))
        conns = probes + idles
        row["open_seconds"] = round(time.monotonic() - t0, 1)
        rss = await settle(proc.pid, args.settle)
        row.update(rss_kib=rss, rss_per_connection_kib=round((rss - rss0) / len(idles), 2))
        if not args.diagnose:
            row["idle_cpu_pct"] = round(await idle_cpu(proc.pid, args.idle_seconds), 2)
        if measured:
            row["latency_ms"] = await latency(probe_http, probe_key, probes, args.rounds)
            phases["latency"] = row["latency_ms"].pop("_windows")
            fan_each, fan_all = [], []
            phases["fanout"] = []
            for _ in range(args.fanout_rounds):
                t1 = time.time()
                each, _rtt = await job_round(idle_http, idle_key, idles, timeout=120)
                phases["fanout"].append((t1, time.time()))
                half = len(each) // 2
                fan_each += each
                fan_all += [max(each[:half]), max(each[half:])]
            if fan_all:
                row["fanout_ms"] = {"subscribers": len(idles), "events": len(fan_all),
                                    "p50_each": round(pct(fan_each, 50), 1),
                                    "p99_each": round(pct(fan_each, 99), 1),
                                    "last_median": round(statistics.median(fan_all), 1)}
        row["alive"] = sum(1 for c in conns if not c.closed.done())
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        row["shutdown_seconds"] = round(time.monotonic() - t0, 2)
        await asyncio.sleep(0.2)
        row["streams_ended_by_server"] = sum(1 for c in conns if c.closed.done())
        if args.diagnose:
            row["diagnosis"] = _diagnosis(data_dir / "stalls.jsonl", phases)
        print(f"[{variant}] {json.dumps(row)}", flush=True)
    finally:
        for c in conns:
            if c.transport and not c.transport.is_closing():
                c.transport.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        for http in (locals().get("idle_http"), locals().get("probe_http")):
            if http is not None:
                await http.aclose()
    return row


def _diagnosis(path: Path, phases: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    """Stalls and full collections of the server, by the phase they fell in."""
    records = [json.loads(line) for line in path.read_text().splitlines()] \
        if path.exists() else []
    out: dict[str, Any] = {}
    for name, windows in phases.items():
        inside = [r for r in records
                  if any(a - 0.05 <= r["at"] <= b + 0.05 for a, b in windows)]
        out[name] = {kind: {"count": len(rs), "max_ms": max(r["ms"] for r in rs)}
                     for kind in ("stall", "gc2")
                     if (rs := [r for r in inside if r["kind"] == kind])}
    out["all"] = {kind: {"count": len(rs), "max_ms": max(r["ms"] for r in rs)}
                  for kind in ("stall", "gc2")
                  if (rs := [r for r in records if r["kind"] == kind])}
    return out


def table(rows: list[dict[str, Any]]) -> str:
    head = ("variant", "conns", "KiB/conn", "idle CPU %", "lat p50 ms", "lat p99 ms",
            "alone p99 ms", "request p99 ms", "fan-out p99 ms", "fan-out last ms", "stop s")
    lines = [head]
    for r in rows:
        fan = r.get("fanout_ms") or {}
        lat = r.get("latency_ms") or {}
        alone = r.get("latency_alone_ms") or {}
        lines.append((r["variant"], str(r["connections"]), f"{r['rss_per_connection_kib']:.2f}",
                      str(r.get("idle_cpu_pct", "-")), str(lat.get("p50", "-")),
                      str(lat.get("p99", "-")), str(alone.get("p99", "-")),
                      str(lat.get("request_p99", "-")), str(fan.get("p99_each", "-")),
                      str(fan.get("last_median", "-")), str(r["shutdown_seconds"])))
    widths = [max(len(x[i]) for x in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(x, widths, strict=True))
                     for x in lines)


async def run(args) -> None:
    rows = []
    for n in args.n:
        for variant in args.variants:
            rows.append(await measure(variant, n, args))
    out = {
        "benchmark": "sse_memory",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cores": os.cpu_count(), "memory_kib": _mem_total(),
                    "load_average": os.getloadavg(),
                    "python": platform.python_version(), "platform": platform.platform()},
        "client": {"probes": args.probes, "rounds": args.rounds,
                   "fanout_rounds": args.fanout_rounds, "sources": args.sources,
                   "idle_seconds": args.idle_seconds, "nofile": raise_nofile()},
        "targets": {"rss_per_connection_kib": 25, "idle_cpu_pct": 5, "latency_p99_ms": 100},
        "results": rows,
    }
    print()
    print(table(rows))
    servers = {(r["server"]["uvloop"], r["server"]["httptools"]) for r in rows}
    print(f"server: uvicorn with uvloop/httptools loaded = {sorted(servers)}")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


def _mem_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(re.findall(r"\d+", line)[0])
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, nargs="+", default=[1000, 5000],
                   help="connection counts to measure (a fresh server for each)")
    p.add_argument("--variants", type=lambda s: s.split(","), default=["app", "stock"])
    p.add_argument("--probes", type=int, default=10, help="streams of the probe person")
    p.add_argument("--rounds", type=int, default=25, help="submit+cancel rounds per level")
    p.add_argument("--fanout-rounds", type=int, default=3)
    p.add_argument("--sources", type=int, default=8, help="127.0.0.x source addresses")
    p.add_argument("--idle-seconds", type=float, default=10.0)
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--diagnose", action="store_true",
                   help="record the server's loop stalls and full GCs (skips idle CPU)")
    p.add_argument("--json", default=str(ROOT / "bench-results" / "sse_memory.json"))
    p.add_argument("--serve", metavar="VARIANT", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    print(f"open-file limit: {raise_nofile()}", flush=True)
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(args))
    else:
        uvloop.run(run(args))


if __name__ == "__main__":
    main()
