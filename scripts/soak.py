"""Soak (docs/RELIABILITY.md): the real server under a steady load for N minutes.

* 1,000 open event streams (10 for each of 100 people, raw HTTP/1.1 readers),
* 20 submissions per second, spread over those people,
* the fake fal server (in a process of its own) as the provider, finishing each job after
  --queue + --run seconds and calling the app's signed webhook, as fal does,
* the app as in production: embedded surrealkv in a temporary DATA_DIR, local storage,
  webhooks on (PUBLIC_BASE_URL), the real fal_client over HTTPS.

Reported (and written to bench-results/soak.json): errors (submissions not answered 202,
streams that failed or were cut off, webhooks not accepted; target 0), jobs not finished when
the load stops and a grace period has passed (target 0), the server's RSS after the warm-up
and at the end (growth target ≤ 5 %), and the event latency p50/p99 in the first and the
last minute: from sending a submission to its first event arriving on each of the person's
open streams; and the CPU each process of the run used over the load (the app, the
database stand-in, the fake fal, this load client) per accepted job, which gives the cores
a rate needs on this machine. After the run the books are checked in the database: no
reservation left, every ledger sums to its balance, one charge per completed job.

    .venv/bin/python scripts/soak.py                 # 10 minutes
    .venv/bin/python scripts/soak.py --minutes 3     # shorter
    .venv/bin/python scripts/soak.py --server        # against a SurrealDB server

With `--server` the app uses a SurrealDB server (`SURREALDB_TEST_URL` when set, else the
test stand-in from tests/fakes, in a process of its own) instead of the embedded store, so
the app's RSS no longer holds the database's: what is left is the app's own growth.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts" / "bench"))

import harness  # noqa: E402 (the benchmarks' one raw-socket /events reader)
from harness import cpu_seconds, rss_kib  # noqa: E402

JOB_ID = re.compile(r"job-([0-9a-f]{32})")


# -- the fake fal server, in a process of its own ------------------------------------------

def _fake_main(conn, queue_time: float, run_time: float) -> None:
    from tests.fakes.fal_server import FakeFal

    fake = FakeFal(queue_time=queue_time, run_time=run_time).start()
    conn.send(fake.env())
    conn.recv()  # until told to stop
    webhooks = Counter(str(d.status_code or d.error) for d in list(fake.webhooks))
    conn.send({"requests": dict(Counter(r.kind for r in list(fake.requests))),
               "webhooks": dict(webhooks), "jobs": len(fake.jobs)})
    fake.stop()


# -- the load -------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)  # ms


METRICS_TOKEN = "soak-metrics"
DB_REQUESTS = re.compile(r'^reelforge_db_requests_total\{kind="(\w+)"\} ([0-9.e+]+)$', re.M)


async def db_requests(base_url: str) -> dict[str, float]:
    """The server's requests to its database so far, by kind (its /metrics)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as c:
        r = await c.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    return {kind: float(n) for kind, n in DB_REQUESTS.findall(r.text)}


async def soak(args, server, helpers: dict[str, int]) -> dict:
    """`helpers`: the run's other processes by name (pid), whose CPU is reported too."""
    from tests.helpers import png_bytes

    port = server.port
    results: dict = {"errors": Counter()}
    people: list[httpx.AsyncClient] = []
    keys: list[str] = []

    async def signup(i: int) -> None:
        # Idle connections are dropped after 2 s, before uvicorn's 5 s keep-alive timeout:
        # each person sends every 5 s, and reusing a connection the server is closing at
        # that moment fails the POST (browsers retry it; httpx does not).
        c = httpx.AsyncClient(base_url=server.url, timeout=60, limits=httpx.Limits(
            max_connections=4, keepalive_expiry=2.0))
        await c.get("/signup")
        r = await c.post("/signup", data={"email": f"soak{i}@example.com",
                                          "password": "correct-horse-1",
                                          "_csrf_token": c.cookies["csrftoken"]})
        assert r.status_code == 303, r.text
        r = await c.post("/api/library", headers={"x-csrftoken": c.cookies["csrftoken"]},
                         files={"file": ("start.png", png_bytes(), "image/png")})
        assert r.status_code == 201, r.text
        people.append(c)
        keys.append(r.json()["key"])

    t0 = time.monotonic()
    sem = asyncio.Semaphore(8)

    async def bounded(i: int) -> None:
        async with sem:
            await signup(i)

    await asyncio.gather(*(bounded(i) for i in range(args.people)))
    print(f"{args.people} people signed up in {time.monotonic() - t0:.0f} s", flush=True)

    streams: list[harness.EventStream] = []
    owner: dict[harness.EventStream, int] = {}  # stream -> its person
    # stream -> job id -> when the job's first event arrived on it
    first_seen: dict[harness.EventStream, dict[str, float]] = defaultdict(dict)

    def seen(stream: harness.EventStream, name: str, data: str, _now: float) -> None:
        at = time.monotonic()
        for job in JOB_ID.findall(name + "\n" + data):
            first_seen[stream].setdefault(job, at)

    per_person = args.streams // args.people
    for n, c in enumerate(people):
        cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
        request = harness.EventStream.request_for(cookie, port=port)
        for s in await harness.open_event_streams(request, per_person, port, batch=per_person,
                                                  on_event=seen, timeout=30):
            owner[s] = n
            streams.append(s)
    await asyncio.sleep(1)
    failed_to_open = [s for s in streams if s.error]
    print(f"{len(streams)} streams open ({len(failed_to_open)} failed)", flush=True)

    sent: dict[str, tuple[float, int]] = {}  # job id -> (sent at, person)
    statuses: Counter = Counter()
    rss: list[tuple[float, int]] = []
    inflight = asyncio.Semaphore(200)
    behind = 0

    async def submit(n: int) -> None:
        c = people[n]
        async with inflight:
            at = time.monotonic()
            try:
                r = await c.post("/api/templates/video",
                                 headers={"x-csrftoken": c.cookies["csrftoken"]},
                                 json={"templateSlug": "car-commercial", "startKey": keys[n],
                                       "variables": {"BRAND": "Soak", "MODEL": str(n)}})
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
                return
            statuses[r.status_code] += 1
            if r.status_code == 202:
                sent[r.json()["jobId"]] = (at, n)

    async def sample_rss() -> None:
        for n in itertools.count():
            rss.append((time.monotonic(), rss_kib(server.proc.pid)))
            if (args.tracemalloc or args.malloc_stats) and n % 12 == 0:  # glibc's, each minute
                os.kill(server.proc.pid, signal.SIGUSR2)
            await asyncio.sleep(5)

    procs = {"app": server.proc.pid, **helpers, "load_client": os.getpid()}
    cpu_at_start = {name: cpu_seconds(pid) for name, pid in procs.items()}
    db_at_start = await db_requests(server.url)

    sampler = asyncio.create_task(sample_rss())
    start, start_unix = time.monotonic(), time.time()
    duration = args.minutes * 60
    tasks: set[asyncio.Task] = set()
    i = 0
    snapshot_at = start + args.warmup if args.tracemalloc else None
    while (now := time.monotonic()) < start + duration:
        if snapshot_at is not None and now >= snapshot_at:
            os.kill(server.proc.pid, signal.SIGUSR1)  # traced_serve.py writes a snapshot
            snapshot_at = None
        due = int((now - start) * args.rate)
        while i < due:
            if inflight.locked():
                behind += 1
            t = asyncio.create_task(submit(i % len(people)))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            i += 1
        await asyncio.sleep(0.01)
    load_end = time.monotonic()
    if args.tracemalloc:
        os.kill(server.proc.pid, signal.SIGUSR1)
    cpu_during_load = {name: cpu_seconds(pid) - cpu_at_start[name]
                       for name, pid in procs.items()}
    await asyncio.wait(tasks, timeout=60) if tasks else None
    print(f"{i} submissions in {load_end - start:.0f} s: {dict(statuses)}", flush=True)

    # Let the last jobs finish: everyone's active list empty, within the grace period.
    unfinished = None
    for _ in range(int(args.grace / 2) + 1):
        unfinished = 0
        for c in people:  # one at a time: this is bookkeeping, not load
            try:
                r = await c.get("/api/jobs", params={"status": "active"})
                unfinished += len(r.json()["jobs"]) if r.status_code == 200 else 1
            except (httpx.HTTPError, ValueError):
                unfinished += 1
        if unfinished == 0:
            break
        await asyncio.sleep(2)
    failed = 0
    for c in people:
        r = await c.get("/api/jobs", params={"status": "failed", "limit": 100})
        failed += len(r.json()["jobs"]) if r.status_code == 200 else 0
    await asyncio.sleep(1)
    sampler.cancel()
    rss.append((time.monotonic(), rss_kib(server.proc.pid)))
    db_at_end = await db_requests(server.url)

    # Latency: sending a submission → its first event on each of the person's streams.
    by_person: dict[int, list[tuple[str, float]]] = {}
    for job, (at, person) in sent.items():
        by_person.setdefault(person, []).append((job, at))

    # (submitted at, seconds until the stream saw it, or None), for each job on each stream
    seen_after = [(at, None if (arrived := first_seen[s].get(job)) is None else arrived - at)
                  for s in streams for job, at in by_person.get(owner[s], ())]

    def latencies(t_from: float, t_to: float) -> tuple[list[float], int]:
        window = [lag for at, lag in seen_after if t_from <= at < t_to]
        return [lag for lag in window if lag is not None], window.count(None)

    by_minute: dict[int, list[float]] = {}  # the lags of the jobs submitted in each minute
    for at, lag in seen_after:
        if lag is not None:
            by_minute.setdefault(int((at - start) // 60), []).append(lag)

    warm = start + args.warmup
    first, first_missing = latencies(warm, warm + 60)
    last, last_missing = latencies(load_end - 60, load_end)
    # RSS over the load: from the end of the warm-up to the end of the load
    during = [kib for t, kib in rss if warm <= t <= load_end + 1]
    base = statistics.median(during[:3]) if during else 0
    end_rss = statistics.median(during[-3:]) if during else 0
    cut_off = sum(1 for s in streams if s.ended_by_server)
    stream_errors = sum(1 for s in streams if s.error)
    for s in streams:
        s.close()
    for c in people:
        await c.aclose()
    not_202 = sum(n for k, n in statuses.items() if k != 202)
    results.update({
        "minutes": args.minutes, "rate_per_s": args.rate, "streams": len(streams),
        # wall clock, for profiles of the server: from the end of the warm-up to the end
        # of the load
        "measured_window_unix": [round(start_unix + args.warmup, 1),
                                 round(start_unix + load_end - start, 1)],
        "people": args.people, "submissions": i, "accepted": statuses.get(202, 0),
        "submit_statuses": {str(k): v for k, v in statuses.items()},
        "submissions_behind_schedule": behind,
        "achieved_rate_per_s": round(i / (load_end - start), 2),
        "failed_jobs": failed, "unfinished_jobs": unfinished,
        "stream_errors": stream_errors, "streams_ended_by_server": cut_off,
        "events_received": sum(s.events for s in streams),
        "latency_first_minute_ms": {"p50": pct(first, 0.5), "p99": pct(first, 0.99),
                                    "n": len(first), "missing": first_missing},
        "latency_last_minute_ms": {"p50": pct(last, 0.5), "p99": pct(last, 0.99),
                                   "n": len(last), "missing": last_missing},
        # Each minute's p99: a minute when the machine fell behind shows here, and a step in
        # the RSS samples at the same time is the backlog's memory, not growth per job.
        "latency_p99_by_minute_ms": [[m, pct(by_minute.get(m, []), 0.99)]
                                     for m in range(int((load_end - start) // 60))],
        "rss_kib": {"after_warmup": base, "end": end_rss,
                    "growth_pct": round(100 * (end_rss - base) / base, 2) if base else None,
                    "after_drain": rss[-1][1] if rss else None,
                    "samples": [[round(t - start, 1), k] for t, k in rss]},
        # Every process of the run (the machine's budget): cores each used over the load,
        # and CPU ms per accepted job, so the cores a rate needs are rate × ms / 1000.
        "cpu_during_load": {
            name: {"cores": round(sec / (load_end - start), 2),
                   "ms_per_job": round(1000 * sec / max(1, statuses.get(202, 0)), 1)}
            for name, sec in {**cpu_during_load,
                              "all": sum(cpu_during_load.values())}.items()},
        "jobs_accepted_per_s": round(statuses.get(202, 0) / (load_end - start), 2),
        # From the first submission until every job had ended: the database requests each
        # accepted job cost (its own, the pages' and streams' reads, the checks of the books).
        "db_requests_per_job": {
            kind: round((db_at_end.get(kind, 0) - db_at_start.get(kind, 0))
                        / max(1, statuses.get(202, 0)), 2) for kind in ("read", "write")},
    })
    results["errors"] = {"submit_not_202": not_202, "stream_errors": stream_errors,
                         "streams_cut_off": cut_off,
                         "events_missing": first_missing + last_missing}
    return results


def check_books(data_dir: Path, people: int, server: dict[str, str]) -> dict:
    from app.db import users as users_db
    from app.db.connection import Database
    from app.settings import Settings

    async def read() -> dict:
        db = Database(Settings(data_dir=data_dir, database_url=server.get("DATABASE_URL"),
                               surrealdb_user=server.get("SURREALDB_USER"),
                               surrealdb_pass=server.get("SURREALDB_PASS"),
                               surrealdb_db=server.get("SURREALDB_DB", "main")))
        await db.connect()
        try:
            bad = Counter()
            for i in range(people):
                user = await users_db.by_email(db, f"soak{i}@example.com")
                if user is None:
                    bad["people_missing"] += 1
                    continue
                if user.reserved or user.active_jobs:  # a typed User since records.py
                    bad["reservations_left"] += 1
                if await users_db.ledger_sum(db, user.id) != user.balance:
                    bad["ledger_mismatch"] += 1
            twice = await db.read_one(
                "SELECT job, count() AS n FROM ledger WHERE reason = 'video' GROUP BY job")
            completed = await db.read_one(
                "SELECT count() AS n FROM video_job WHERE status = 'completed' GROUP ALL")
            items = await db.read_one(
                "SELECT count() AS n FROM library WHERE kind = 'video' GROUP ALL")
            return {**bad, "charged_twice": sum(1 for r in twice if r["n"] > 1),
                    "charges": len(twice),
                    "completed": completed[0]["n"] if completed else 0,
                    "video_items": items[0]["n"] if items else 0}
        finally:
            await db.close()

    return asyncio.run(read())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=20.0, help="submissions per second")
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--people", type=int, default=100)
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS/latency")
    ap.add_argument("--grace", type=float, default=120.0,
                    help="seconds the last jobs get to finish")
    ap.add_argument("--queue", type=float, default=0.5, help="fake fal queue time (s)")
    ap.add_argument("--run", type=float, default=2.0, help="fake fal run time (s)")
    ap.add_argument("--server", action="store_true",
                    help="a SurrealDB server (SURREALDB_TEST_URL, else the stand-in)")
    ap.add_argument("--out", default=str(ROOT / "bench-results" / "soak.json"))
    # one way of running the server at a time (memray's server has no signal handlers)
    profile = ap.add_mutually_exclusive_group()
    profile.add_argument("--tracemalloc", metavar="DIR",
                    help="run the server with tracemalloc; snapshots after the warm-up and at "
                         "the end of the load go to DIR (scripts/bench/tracemalloc_diff.py), "
                         "and glibc's malloc figures each minute to DIR/malloc.jsonl")
    profile.add_argument("--memray", metavar="FILE",
                    help="run the server under memray (pip install memray), its capture to "
                         "FILE; scripts/bench/memray_growth.py names what grew after the "
                         "warm-up")
    profile.add_argument("--malloc-stats", metavar="DIR",
                    help="only glibc's malloc figures each minute, to DIR/malloc.jsonl "
                         "(without tracemalloc's cost)")
    args = ap.parse_args()
    os.environ.pop("DATABASE_URL", None)

    from tests.fakes.surreal_fixture import start_surreal_standin, stop_surreal_standin

    standin = None
    server_env: dict[str, str] = {}
    if args.server:
        url = os.environ.get("SURREALDB_TEST_URL")
        if not url:
            standin, url = start_surreal_standin()
        server_env = {"DATABASE_URL": url, "SURREALDB_USER": "root", "SURREALDB_PASS": "root",
                      "SURREALDB_DB": f"soak_{os.getpid()}"}
    try:
        run(args, standin, server_env)
    finally:
        if standin is not None:
            stop_surreal_standin(standin)


def run(args: argparse.Namespace, standin, server_env: dict[str, str]) -> None:
    from tests.crashkit import ServerProcess

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    fake_proc = ctx.Process(target=_fake_main, args=(child, args.queue, args.run), daemon=True)
    fake_proc.start()
    fake_env = parent.recv()
    data_dir = Path(tempfile.mkdtemp(prefix="soak-"))
    server = ServerProcess(data_dir, {
        **fake_env, "VIDEO_PROVIDER": "fal", "SIGNUP_CREDITS": "1000000000",
        "SIGNUPS_PER_HOUR": "1000000",
        "LOG_FORMAT": "json", "METRICS_TOKEN": METRICS_TOKEN, **server_env})
    server.env["PUBLIC_BASE_URL"] = server.url  # fal's webhooks come back to this server
    if args.memray:
        server.command = ("-m", "memray", "run", "--quiet", "-o",
                          str(Path(args.memray).resolve()), "-m", "app", "serve")
    elif args.tracemalloc or args.malloc_stats:
        server.command = (str(ROOT / "scripts" / "bench" / "traced_serve.py"),)
        server.env["TRACEMALLOC_DIR"] = str(Path(args.tracemalloc or args.malloc_stats
                                                 ).resolve())
        if not args.tracemalloc:
            server.env["TRACEMALLOC_FRAMES"] = "0"
    started = time.time()
    load_at_start = os.getloadavg()
    results_fake: dict = {}
    server.start(timeout=60)
    try:
        # plain asyncio: with uvloop, httpx's connects hung here now and then
        helpers = {"fake_fal": fake_proc.pid}
        if standin is not None:
            helpers["database"] = standin.pid
        results = asyncio.run(soak(args, server, helpers))
        t = time.monotonic()
        results["exit_code"] = server.stop(timeout=30)
        results["stop_seconds"] = round(time.monotonic() - t, 1)
    finally:
        server.kill()
        parent.send("stop")
        with contextlib.suppress(EOFError):
            results_fake = parent.recv() if parent.poll(30) else {}
        fake_proc.join(timeout=30)
    results["fal"] = results_fake
    results["database"] = ("embedded surrealkv" if not args.server else
                           "stand-in" if standin else "SURREALDB_TEST_URL")
    if standin is not None:  # where the store's memory went
        results["standin_rss_kib"] = rss_kib(standin.pid)
    try:
        results["books"] = check_books(data_dir, args.people, server_env)
    except Exception as exc:  # the run's figures are still written
        results["books"] = {"error": repr(exc)}
    webhooks_bad = sum(n for k, n in results_fake.get("webhooks", {}).items() if k != "200")
    results["errors"]["webhooks_not_accepted"] = webhooks_bad
    results["errors_total"] = sum(results["errors"].values())
    results["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    results["load_average_at_start"] = load_at_start
    results["load_average_at_end"] = os.getloadavg()
    results["data_dir_mb"] = round(sum(p.stat().st_size for p in data_dir.rglob("*")
                                       if p.is_file()) / 1e6, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {k: v for k, v in results.items() if k != "rss_kib"}
    summary["rss_kib"] = {k: v for k, v in results["rss_kib"].items() if k != "samples"}
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(json.dumps(summary, indent=1, default=str))
    shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
