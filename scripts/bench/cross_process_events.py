"""Event latency across processes: how long after a job is submitted on process A a stream
on process B shows it (B learns of it from the database's change feed).

Two `python -m app serve` processes (local renderer, local storage, one shared data
directory) against one SurrealDB server: SURREALDB_TEST_URL when set, otherwise the test
stand-in from tests/fakes (the SDK's embedded engine behind the RPC protocol, one request at
a time: slower than a real server, so the figure is pessimistic). One person submits a job
on A every `--gap` seconds with a stream open on B; each job is canceled as soon as B has
shown it, so renders do not pile up. Latency is from A's 202 answer (the job is committed)
to B's event carrying the new card; the time from the request's start is shown too.

Target: p99 ≤ 250 ms.

    .venv/bin/python scripts/bench/cross_process_events.py            # 200 jobs
    .venv/bin/python scripts/bench/cross_process_events.py --quick    # 30 jobs

Prints a table and writes bench-results/cross_process_events.json."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import harness

sys.path.insert(0, str(harness.ROOT))
from tests.fakes.live_server import EventReader  # noqa: E402
from tests.fakes.surreal_fixture import start_surreal_standin, stop_surreal_standin  # noqa: E402
from tests.helpers import Account, png_bytes  # noqa: E402


async def measure(a_url: str, b_url: str, jobs: int, gap: float) -> dict:
    import httpx

    from_answer, from_request = [], []
    async with httpx.AsyncClient(base_url=a_url, timeout=30) as a, \
            httpx.AsyncClient(base_url=b_url, timeout=30) as b:
        alice = await Account.signup(a, f"bench-{uuid.uuid4().hex[:8]}@example.com")
        key = await alice.upload(png_bytes())
        for name, value in a.cookies.items():
            b.cookies.set(name, value)
        async with b.stream("GET", "/events", headers={"accept": "text/event-stream"},
                            timeout=httpx.Timeout(30, read=None)) as response:
            reader = EventReader(response)
            await reader.until(lambda e: e.event == "credits")
            for _ in range(jobs):
                started = time.perf_counter()
                r = await alice.submit(key)
                answered = time.perf_counter()
                job_id = r.json()["jobId"]
                await reader.until(lambda e, j=job_id: e.event == "jobs" and j in e.data,
                                   timeout=10)
                seen = time.perf_counter()
                from_answer.append((seen - answered) * 1000)
                from_request.append((seen - started) * 1000)
                await alice.post("/api/templates/video/cancel", params={"jobId": job_id})
                await asyncio.sleep(gap)
    return {"from_answer_ms": harness.summary(from_answer),
            "from_request_ms": harness.summary(from_request)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between submissions")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    jobs = 30 if args.quick else args.jobs

    url = os.environ.get("SURREALDB_TEST_URL")
    standin = None
    if not url:
        standin, url = start_surreal_standin()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-xproc-"))
    env = harness.base_env(
        data_dir, DATABASE_URL=url, SURREALDB_USER="root", SURREALDB_PASS="root",
        SURREALDB_DB=f"bench_{uuid.uuid4().hex[:8]}", VIDEO_PROVIDER="local",
        MAX_ACTIVE_JOBS=1000, SIGNUP_CREDITS=1_000_000, ALLOWED_HOSTS="127.0.0.1,localhost")
    servers = [harness.AppServer(env, name=name) for name in ("A", "B")]
    try:
        for server in servers:
            server.start()
        figures = harness.run(measure(servers[0].url, servers[1].url, jobs, args.gap))
    finally:
        for server in servers:
            server.stop()
        if standin is not None:
            stop_surreal_standin(standin)
    p99 = figures["from_answer_ms"]["p99"]
    targets = [harness.target("B shows A's job, p99", p99, 250, unit="ms")]
    print(harness.table([(k, *v.values()) for k, v in figures.items()],
                        ["latency", *figures["from_answer_ms"].keys()]))
    print(harness.targets_table(targets))
    out = harness.write_results("cross_process_events", {
        "machine": harness.machine_info(), "jobs": jobs, "gap_s": args.gap,
        "database": "SURREALDB_TEST_URL" if standin is None else "stand-in",
        **figures, "targets": targets})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
