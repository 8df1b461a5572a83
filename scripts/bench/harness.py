"""Shared pieces of the benchmark scripts in scripts/bench/.

Everything a benchmark needs to run the real thing on this machine and report on it:

* `AppServer`: the app as `python -m app serve` (uvicorn, its default loop and HTTP parser)
  in a subprocess with a given environment, waited on through GET /health, stopped with
  SIGTERM; `.pid` is what /proc is read for.
* `FakeFalProcess`: tests/fakes/fal_server.py's FakeFal (fal's queue protocol over HTTPS)
  in a process of its own, so its work competes with the app for cores but not for the
  benchmark's GIL; driven through a pipe (`call("complete_now", rid)`, `counts_by_job()`,
  `jobs()`, `first_request_at(kind)`).
* `MotoProcess`: moto's S3 server in a subprocess, with a bucket; `.env()` gives STORAGE=s3.
* `signup` / `signup_many`: accounts over HTTP the way a browser makes them (GET /signup for
  the CSRF cookie, POST /signup), each with an uploaded start image.
* `EventStream` / `open_event_streams`: the one raw-socket /events reader of every benchmark
  (one protocol object and one socket each, no HTTP client), for holding up to tens of
  thousands of open pages, spread over several 127.0.0.x source addresses.
* /proc readers (`rss_kib`, `hwm_kib`, `cpu_seconds`, `RssSampler`), `pct` / `summary`
  (nearest-rank percentiles), `machine_info()` (cores, memory, CPU model), `table()` and
  `write_results(name, data)` → bench-results/<name>.json with machine and command.

Scripts run as `.venv/bin/python scripts/bench/NAME.py`; this directory is then on sys.path,
so they `import harness`. No network beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import multiprocessing as mp
import os
import platform
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "bench-results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PASSWORD = "bench-password-1"  # noqa: S105 (throwaway accounts on a throwaway database)
TEMPLATE = "car-commercial"
VARIABLES = {"BRAND": "Aurora", "MODEL": "S1"}
MB = 1024 * 1024


# --- this machine and its processes --------------------------------------------------------
def _meminfo_kib(name: str = "MemTotal") -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(re.findall(r"\d+", line)[0])
    return 0


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_kib": _meminfo_kib(),
        "memory_gib": round(_meminfo_kib() / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Other work on the machine skews every figure: the load when the results were written.
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def raise_nofile(want: int = 20_000) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for {pid}")


def rss_kib(pid: int) -> int:
    return _status_kib(pid, "VmRSS")


def hwm_kib(pid: int) -> int:
    """Peak RSS since start (or since `reset_peak`)."""
    return _status_kib(pid, "VmHWM")


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0, same user); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds per wall second of a process between start() and stop()."""

    def __init__(self, pid: int):
        self.pid = pid
        self.c0 = self.t0 = 0.0

    def start(self) -> CpuMeter:
        self.c0, self.t0 = cpu_seconds(self.pid), time.monotonic()
        return self

    def read(self) -> dict[str, float]:
        cpu, wall = cpu_seconds(self.pid) - self.c0, time.monotonic() - self.t0
        return {"cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                "cores": round(cpu / wall, 4) if wall else 0.0}


class RssSampler:
    """Samples VmRSS of a process every `interval` s in a thread; `.peak` and `.samples`."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self.samples.append((time.monotonic(), rss_kib(self.pid)))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max((kib for _t, kib in self.samples), default=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- numbers and reports -------------------------------------------------------------------
def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


def summary(values: Sequence[float], digits: int = 2) -> dict[str, float | int]:
    """count, mean, p50, p95, p99, max of a list of numbers."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "mean": round(sum(values) / len(values), digits),
            "p50": round(pct(values, 50), digits), "p95": round(pct(values, 95), digits),
            "p99": round(pct(values, 99), digits), "max": round(max(values), digits)}


def target(name: str, value: float, limit: float, op: str = "<=", unit: str = "",
           note: str = "") -> dict[str, Any]:
    """One row of a benchmark's targets: met when `value op limit`."""
    ops = {"<=": value <= limit, ">=": value >= limit}
    return {"target": name, "value": value, "limit": limit, "op": op, "unit": unit,
            "met": bool(ops[op]), "note": note}


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) < 1000 else f"{v:.0f}"
    if isinstance(v, bool):
        return "met" if v else "NOT MET"
    return str(v)


def targets_table(targets: list[dict[str, Any]]) -> str:
    return table([(t["target"], f"{t['value']}{t['unit']}", f"{t['op']} {t['limit']}{t['unit']}",
                   t["met"]) for t in targets], ["target", "measured", "wanted", "result"])


def write_results(name: str, data: dict[str, Any], path: str | Path | None = None) -> Path:
    """bench-results/<name>.json with the benchmark's data, this machine and the command."""
    out = {"benchmark": name,
           "command": " ".join([".venv/bin/python", *[_rel(a) for a in sys.argv]]),
           "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(), **data}
    target_path = Path(path) if path else RESULTS_DIR / f"{name}.json"
    target_path.parent.mkdir(parents=True, exist_ok=True)
    target_path.write_text(json.dumps(out, indent=2, default=str))
    return target_path


def _rel(arg: str) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(arg).resolve().relative_to(ROOT))
    return arg


def base_env(data_dir: Path, **extra: Any) -> dict[str, str]:
    """The environment of a throwaway app: this process's, less anything that would point it
    at a developer's settings, plus `extra` (names as the app reads them)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("FAL_KEY", "PUBLIC_BASE_URL", "ALLOWED_HOSTS", "DATABASE_URL", "STORAGE",
                        "S3_BUCKET", "S3_ENDPOINT_URL", "VIDEO_PROVIDER", "SSL_CERT_FILE",
                        "FAL_QUEUE_RUN_HOST", "FAL_RUN_HOST", "FAL_WEBHOOK_JWKS_URL",
                        "REELFORGE_CRASH_AT", "STATUS_INTERVAL")}
    env.update({"DATA_DIR": str(data_dir), "DATABASE_URL": "mem://", "SECRET_KEY": "bench-secret",
                "LOG_FORMAT": "console", "PYTHONUNBUFFERED": "1",
                "SIGNUPS_PER_HOUR": "1000000"})  # benchmarks make their accounts from one address
    env.update({k: str(v) for k, v in extra.items() if v is not None})
    return env


# --- the app in a subprocess ---------------------------------------------------------------
@dataclass
class AppServer:
    """The app as `python -m app serve` on 127.0.0.1:port with `env` (see `base_env`).
    `cmd` replaces the command (it gets `--port PORT` appended), e.g. a variant server."""

    env: dict[str, str]
    name: str = "app"
    port: int = field(default_factory=free_port)
    cmd: list[str] | None = None
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60) -> AppServer:
        data_dir = Path(self.env.get("DATA_DIR") or tempfile.mkdtemp(prefix="bench-"))
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / f"{self.name}-server.log"
        cmd = (self.cmd or [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1"])
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen([*cmd, "--port", str(self.port)], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited at start; see {self.log_path}:\n"
                                   + self.log_tail())
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} server did not become healthy; see {self.log_path}")

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the fake fal in a process of its own --------------------------------------------------
def _fake_fal_main(conn, defaults: dict[str, Any], media_host: str) -> None:  # child process
    import dataclasses

    from tests.fakes.fal_server import FakeFal, JobSpec

    fake = FakeFal(media_host=media_host)
    fake.defaults = JobSpec(**defaults)
    fake.start()
    conn.send({"env": fake.env(), "base_url": fake.base_url})

    def jobs() -> dict[str, dict[str, Any]]:
        out = {}
        for rid, job in list(fake.jobs.items()):
            spec = job.spec
            out[rid] = {"submitted_at": job.submitted_at, "queue_time": spec.queue_time,
                        "run_time": spec.run_time, "state": job.state(),
                        "done_at": None if spec.never_complete
                        else job.submitted_at + spec.queue_time + spec.run_time,
                        "webhook_url": job.webhook_url,
                        "prompt": (job.arguments or {}).get("prompt")
                        if isinstance(job.arguments, dict) else None}
        return out

    def first_request_at(kind: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for r in list(fake.requests):
            if r.kind == kind and r.request_id is not None and r.request_id not in out:
                out[r.request_id] = r.at
        return out

    def complete_all(ids: list[str]) -> float:
        at = time.time()
        for rid in ids:
            fake.complete_now(rid)
        return at

    def set_defaults(**fields: Any) -> None:
        fake.defaults = JobSpec(**fields)

    def queue_specs(specs: list[dict[str, Any]]) -> int:
        """The next len(specs) submissions get these JobSpec fields, in order."""
        with fake._lock:
            fake._next_specs.extend(JobSpec(**{**dataclasses.asdict(fake.defaults), **s})
                                    for s in specs)
        return len(specs)

    def request_times(kind: str) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for r in list(fake.requests):
            if r.kind == kind and r.request_id is not None:
                out.setdefault(r.request_id, []).append(r.at)
        return out

    def webhook_stats() -> dict[str, int]:
        return {"delivered": len(fake.webhooks),
                "ok": sum(1 for d in fake.webhooks if d.status_code == 200)}

    def counts_by_kind() -> dict[str, int]:
        out: dict[str, int] = {}
        for r in list(fake.requests):
            out[r.kind] = out.get(r.kind, 0) + 1
        return out

    local = {"jobs": jobs, "first_request_at": first_request_at, "complete_all": complete_all,
             "set_defaults": set_defaults, "webhook_stats": webhook_stats,
             "queue_specs": queue_specs, "request_times": request_times,
             "counts_by_kind": counts_by_kind,
             "counts_by_job": lambda: {k: dict(v) for k, v in fake.counts_by_job().items()}}
    try:
        while True:
            try:
                name, args, kwargs = conn.recv()
            except EOFError:
                break
            if name == "stop":
                conn.send(None)
                break
            try:
                fn = local.get(name) or getattr(fake, name)
                conn.send(("ok", fn(*args, **kwargs)))
            except Exception as exc:  # reported to the caller
                conn.send(("error", repr(exc)))
    finally:
        fake.stop()


class FakeFalProcess:
    """A FakeFal in a child process. `defaults` are JobSpec fields for every submission."""

    def __init__(self, media_host: str = "127.0.0.1", **defaults: Any):
        self.defaults = defaults
        self.media_host = media_host
        self._lock = threading.Lock()
        self.proc: Any = None
        self._conn: Any = None
        self.info: dict[str, Any] = {}

    def start(self) -> FakeFalProcess:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_fake_fal_main, args=(child, self.defaults,
                                                             self.media_host),
                                daemon=True, name="fake-fal")
        self.proc.start()
        if not parent.poll(60):
            raise TimeoutError("fake fal did not start")
        self.info = parent.recv()
        self._conn = parent
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def env(self) -> dict[str, str]:
        return dict(self.info["env"])

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._conn.send((name, args, kwargs))
            status, value = self._conn.recv()
        if status == "error":
            raise RuntimeError(f"fake fal {name}: {value}")
        return value

    async def acall(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self.call, name, *args, **kwargs)

    def counts_by_job(self) -> dict[str, dict[str, int]]:
        return self.call("counts_by_job")

    def jobs(self) -> dict[str, dict[str, Any]]:
        return self.call("jobs")

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception), self._lock:
            self._conn.send(("stop", (), {}))
            self._conn.recv()
        self.proc.join(15)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.proc = None

    def __enter__(self) -> FakeFalProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- moto S3 in a subprocess --------------------------------------------------------------
class MotoProcess:
    """moto's S3 server (`python -m moto.server`) on 127.0.0.1 with one bucket."""

    bucket = "reelforge-bench"
    key_id = "bench-access-key"
    secret = "bench-secret-key"  # noqa: S105

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> MotoProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client().create_bucket(Bucket=self.bucket)
                return self
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.2)

    def env(self) -> dict[str, str]:
        return {"STORAGE": "s3", "S3_BUCKET": self.bucket, "S3_ENDPOINT_URL": self.url,
                "S3_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": self.key_id,
                "AWS_SECRET_ACCESS_KEY": self.secret}

    def client(self, **config: Any):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=self.key_id, aws_secret_access_key=self.secret,
                            config=Config(s3={"addressing_style": "path"}, **config))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> MotoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- accounts over HTTP --------------------------------------------------------------------
def png_bytes(size: tuple[int, int] = (320, 180)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (200, 90, 40)).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class Account:
    """A signed-in person: cookies (session + csrftoken) and their uploaded start image.
    `http` is an httpx.AsyncClient with the cookies and the CSRF header set."""

    email: str
    base_url: str
    cookies: dict[str, str]
    start_key: str | None = None
    http: Any = None

    @property
    def csrf(self) -> str:
        return self.cookies["csrftoken"]

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def client(self, **kw: Any):
        """A new keep-alive httpx.AsyncClient for this person (e.g. in another process)."""
        import httpx

        return httpx.AsyncClient(base_url=self.base_url, cookies=self.cookies,
                                 headers={"x-csrftoken": self.csrf},
                                 timeout=kw.pop("timeout", 30), **kw)

    def portable(self) -> dict[str, Any]:
        """What another process needs to act as this person."""
        return {"email": self.email, "base_url": self.base_url, "cookies": self.cookies,
                "start_key": self.start_key}

    @classmethod
    def from_portable(cls, data: dict[str, Any]) -> Account:
        return cls(**data)

    async def submit(self, variables: dict[str, str] | None = None):
        return await self.http.post("/api/templates/video", json={
            "templateSlug": TEMPLATE, "startKey": self.start_key,
            "variables": variables or VARIABLES})

    async def aclose(self) -> None:
        if self.http is not None:
            await self.http.aclose()


async def signup(base_url: str, email: str, *, upload: bool = True) -> Account:
    import httpx

    http = httpx.AsyncClient(base_url=base_url, timeout=60)
    await http.get("/signup")
    r = await http.post("/signup", data={"email": email, "password": PASSWORD,
                                          "_csrf_token": http.cookies.get("csrftoken")})
    if r.status_code != 303:
        raise RuntimeError(f"signup of {email} failed: {r.status_code} {r.text[:200]}")
    http.headers["x-csrftoken"] = http.cookies["csrftoken"]
    account = Account(email, base_url, dict(http.cookies.items()), http=http)
    if upload:
        r = await http.post("/api/library", files={"file": ("start.png", _PNG(), "image/png")})
        if r.status_code != 201:
            raise RuntimeError(f"upload for {email} failed: {r.status_code} {r.text[:200]}")
        account.start_key = r.json()["key"]
    return account


def _PNG() -> bytes:  # noqa: N802 - a cached constant
    global _png_cache
    if _png_cache is None:
        _png_cache = png_bytes()
    return _png_cache


_png_cache: bytes | None = None


async def signup_many(base_url: str, n: int, prefix: str = "bench", *, concurrency: int = 8,
                      upload: bool = True) -> list[Account]:
    """n accounts `{prefix}{i}@bench.example` (password hashing makes this ~0.1 s each)."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Account:
        async with sem:
            return await signup(base_url, f"{prefix}{i}@bench.example", upload=upload)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


# --- /events readers -----------------------------------------------------------------------
class EventStream(asyncio.Protocol):
    """One open page's /events stream, read with a raw socket: HTTP/1.1 head, chunked body,
    SSE frames. The one reader every benchmark uses (sse_memory.py, provider_traffic.py,
    scripts/soak.py): a protocol object and a socket each, no HTTP client, light enough to
    hold 10,000 of. Counts frames and events and calls `on_event(stream, name, data, now)`
    for each event (`now`: time.perf_counter() when its bytes arrived)."""

    def __init__(self, request: bytes, on_event=None):
        self.request = request
        self.on_event = on_event
        self.raw = bytearray()
        self.body = bytearray()
        self.head = True
        self.status = 0
        self.frames = 0
        self.events = 0
        self.error: str | None = None  # not answered 200, or the connection failed
        self.closed_here = False  # closed by this side (close())
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()  # perf_counter() when the first event arrived
        self.closed = loop.create_future()
        self.transport: asyncio.Transport | None = None

    @staticmethod
    def request_for(account: Account | str, host: str = "127.0.0.1", port: int = 80) -> bytes:
        """The GET /events request of an account (or of a Cookie header's value)."""
        cookie = account if isinstance(account, str) else account.cookie_header
        return (f"GET /events HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Accept: text/event-stream\r\nCookie: {cookie}\r\n\r\n").encode()

    @property
    def ended_by_server(self) -> bool:
        """The server ended the stream cleanly (cut off as too slow, or shutting down)."""
        return self.closed.done() and not self.closed_here and self.error is None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc) -> None:
        if exc is not None and self.error is None and not self.closed_here:
            self.error = f"{type(exc).__name__}: {exc}"[:200]
        if not self.closed.done():
            self.closed.set_result(exc)
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before any event ({exc})"))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.raw += data
        if self.head:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.raw[9:12])
            del self.raw[:end + 4]
            self.head = False
            if self.status != 200:
                self.error = f"/events answered HTTP {self.status}"
                if not self.ready.done():
                    self.ready.set_exception(RuntimeError(self.error))
                return
        while True:  # de-chunk whole chunks
            eol = self.raw.find(b"\r\n")
            if eol < 0:
                break
            size = int(bytes(self.raw[:eol]).split(b";")[0], 16)
            end = eol + 2 + size + 2
            if len(self.raw) < end:
                break
            self.body += self.raw[eol + 2:eol + 2 + size]
            del self.raw[:end]
            if size == 0:
                break
        if b"\n\n" not in self.body and b"\r\n\r\n" not in self.body:
            return  # no frame has ended yet
        frames = bytes(self.body).replace(b"\r\n", b"\n").split(b"\n\n")
        self.body = bytearray(frames.pop())
        for frame in frames:
            self.frames += 1
            name, data = "message", []
            for line in frame.decode(errors="replace").split("\n"):
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
            if not data:
                continue  # a ping comment
            self.events += 1
            if not self.ready.done():
                self.ready.set_result(now)
            if self.on_event:
                self.on_event(self, name, "\n".join(data), now)

    def close(self) -> None:
        self.closed_here = True
        if self.transport and not self.transport.is_closing():
            self.transport.close()


async def open_event_streams(account: Account | bytes, n: int, port: int, *, batch: int = 100,
                             on_event=None, timeout: float = 60,
                             sources: Sequence[str] = ("127.0.0.1",), start: int = 0,
                             retries: int = 0) -> list[EventStream]:
    """n open /events streams of one person (an account, or a ready request), each waited
    on until its snapshot arrived, `batch` at a time. Past ~28,000 connections to one port
    a single source address runs out of ephemeral ports: `sources` spreads them over
    several 127.0.0.x addresses (stream i uses sources[(start + i) % len]). A failed open is
    tried again `retries` times, then raised."""
    loop = asyncio.get_running_loop()
    request = account if isinstance(account, bytes) else EventStream.request_for(account,
                                                                                 port=port)

    async def one(i: int) -> EventStream:
        src = sources[(start + i) % len(sources)]
        for attempt in range(retries + 1):
            try:
                _t, stream = await loop.create_connection(
                    lambda: EventStream(request, on_event), "127.0.0.1", port,
                    local_addr=(src, 0))
                await asyncio.wait_for(stream.ready, timeout)
                return stream
            except (ConnectionError, OSError, TimeoutError):
                if attempt == retries:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    streams: list[EventStream] = []
    for lo in range(0, n, batch):
        streams += await asyncio.gather(*(one(i) for i in range(lo, min(n, lo + batch))))
    return streams


async def health_probe(url: str, start_at: float, stop_at: float,
                       interval: float, timeout: float = 30) -> list[tuple[float, float, int]]:
    """GET /health every `interval` s between two wall-clock times: (start, ms, status)."""
    import httpx

    samples = []
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as http:
        await http.get("/health")
        await asyncio.sleep(max(0.0, start_at - time.time()))
        while (t0 := time.time()) < stop_at:
            p0 = time.perf_counter()
            try:
                status = (await http.get("/health")).status_code
            except httpx.HTTPError:
                status = 0
            samples.append((t0, (time.perf_counter() - p0) * 1000, status))
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - p0)))
    return samples


def run(coro) -> Any:
    """asyncio.run with uvloop when it is installed (as uvicorn runs the app)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# --- profiling -----------------------------------------------------------------------------
def start_py_spy(pid: int, seconds: float, out: str | Path, rate: int = 100,
                 native: bool = False) -> subprocess.Popen | None:
    """Sample a process with py-spy (if installed: `.venv/bin/pip install py-spy`) into a
    collapsed-stack file `out`; returns the py-spy process (None when py-spy is missing)."""
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        print("py-spy is not installed: .venv/bin/pip install py-spy", flush=True)
        return None
    cmd = [str(exe), "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", str(rate),
           "-f", "raw", "-o", str(out), "--nonblocking"]
    if native:
        cmd.append("--native")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(path: str | Path, top: int = 25) -> dict[str, list[tuple[str, float]]]:
    """From a collapsed-stack file: the share of samples per function, inclusive (anywhere on
    the stack) and self (the innermost frame), highest first."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " " + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]
                  for f in stack.split(";")]
        for f in set(frames):
            inclusive[f] = inclusive.get(f, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n

    def ranked(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1))
                for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": total, "inclusive_pct": ranked(inclusive), "self_pct": ranked(own)}
