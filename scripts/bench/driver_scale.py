"""Driver scale: N jobs in flight on one server process at the default status schedule.

The server is `python -m app serve` (DATABASE_URL=mem://, local storage) against the fake
fal in a process of its own. `--accounts` people (a raised MAX_ACTIVE_JOBS, enough credits)
submit `--jobs` jobs over HTTP; each job takes a known time at the fake (spread uniformly
between `--min-seconds` and `--max-seconds`, a fifth of it queued), and no webhook is
configured, so the driver checks each job every 10 s (app/jobs/schedule.py STATUS_INTERVAL).

Reported:
* driver CPU: the server's CPU seconds per wall second (/proc/PID/stat, all threads) while
  every job is in flight and nothing but the driver runs in the process ("steady"), and
  while the jobs finish ("finishing": noticing, downloading, storing, charging);
* notice delay: from the moment a job finished at the provider (the fake knows: submission
  time + queue + run time) to the driver noticing (its first result request for the job,
  made right after it moved the job out of processing); and to the job being completed
  (finishedAt from GET /api/jobs);
* status checks per second during the steady window against the schedule's N / 10 s.

Targets: ≤ 25 % of one core; notice delay ≤ one status interval (10 s).

    .venv/bin/python scripts/bench/driver_scale.py                # 2,000 jobs
    .venv/bin/python scripts/bench/driver_scale.py --quick        # 200 jobs, shorter

Prints a table and writes bench-results/driver_scale.json."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import harness

STATUS_INTERVAL = 10.0  # app/jobs/schedule.py; the benchmark leaves the app's default


async def submit_all(accounts: list[harness.Account], per_account: int,
                     concurrency: int) -> list[tuple[harness.Account, str]]:
    sem = asyncio.Semaphore(concurrency)
    out: list[tuple[harness.Account, str]] = []

    async def one(acc: harness.Account, i: int) -> None:
        async with sem:
            r = await acc.submit({"BRAND": f"{acc.email.split('@')[0]}x{i}x", "MODEL": "S1"})
            if r.status_code != 202:
                raise RuntimeError(f"submit: {r.status_code} {r.text[:200]}")
            out.append((acc, r.json()["jobId"]))

    await asyncio.gather(*(one(a, i) for a in accounts for i in range(per_account)))
    return out


async def finished_at(accounts: list[harness.Account]) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    for acc in accounts:
        offset: int | None = 0
        while offset is not None:
            body = (await acc.http.get("/api/jobs", params={"limit": 100,
                                                            "offset": offset})).json()
            for j in body["jobs"]:
                jobs[j["jobId"]] = j
            offset = body["nextOffset"]
    return jobs


async def bench(args) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-driver-"))
    fake = harness.FakeFalProcess(queue_time=1, run_time=1).start()
    per_account = -(-args.jobs // args.accounts)
    server = harness.AppServer({}, name="driver")
    env = harness.base_env(data_dir, VIDEO_PROVIDER="fal", STORAGE="local",
                           SIGNUP_CREDITS=10**9, MAX_ACTIVE_JOBS=per_account + 10,
                           PUBLIC_BASE_URL=server.url if args.webhook else None,
                           **fake.env())
    server.env = env
    rng = random.Random(7)
    durations = [rng.uniform(args.min_seconds, args.max_seconds) for _ in range(args.jobs)]
    await fake.acall("queue_specs", [{"queue_time": round(d * 0.2, 3),
                                      "run_time": round(d * 0.8, 3)} for d in durations])
    result: dict[str, Any] = {"config": {
        "jobs": args.jobs, "accounts": args.accounts, "min_seconds": args.min_seconds,
        "max_seconds": args.max_seconds, "status_interval": STATUS_INTERVAL,
        "webhook": args.webhook,
        "driver_concurrency": env.get("DRIVER_CONCURRENCY", "64 (default)")}}
    try:
        server.start()
        pid = server.pid
        print(f"server pid {pid} at {server.url}; fake fal pid {fake.pid}", flush=True)
        accounts = await harness.signup_many(server.url, args.accounts, "driver")
        idle = harness.CpuMeter(pid).start()
        await asyncio.sleep(3)
        result["idle_cpu_before"] = idle.read()
        t_submit = time.time()
        submitted = await submit_all(accounts, per_account, 32)
        submitted = submitted[: args.jobs]
        result["submit_seconds"] = round(time.time() - t_submit, 1)
        print(f"{len(submitted)} jobs submitted over HTTP in {result['submit_seconds']} s",
              flush=True)
        # Wait until the driver has handed every job to fal.
        deadline = time.time() + 120
        while (n := await fake.acall("count", "submit")) < len(submitted):
            if time.time() > deadline:
                raise TimeoutError(f"only {n} of {len(submitted)} jobs reached fal")
            await asyncio.sleep(0.5)
        t_all_at_fal = time.time()
        result["all_at_fal_seconds"] = round(t_all_at_fal - t_submit, 1)
        jobs = await fake.acall("jobs")
        first_done = min(j["done_at"] for j in jobs.values())
        last_done = max(j["done_at"] for j in jobs.values())
        # Steady window: every job in flight, none finished; skip the first status round.
        w0 = t_all_at_fal + min(STATUS_INTERVAL, max(0.0, first_done - t_all_at_fal) / 3)
        w1 = first_done - 1.0
        if w1 - w0 < 10:
            raise RuntimeError(f"steady window too short ({w1 - w0:.1f} s): raise --min-seconds")
        await asyncio.sleep(max(0.0, w0 - time.time()))
        steady = harness.CpuMeter(pid).start()
        rss_steady0 = harness.rss_kib(pid)
        spy = (harness.start_py_spy(pid, w1 - w0, args.profile) if args.profile else None)
        await asyncio.sleep(max(0.0, w1 - time.time()))
        result["steady"] = {**steady.read(), "rss_kib": harness.rss_kib(pid),
                            "rss_kib_at_start": rss_steady0}
        if spy is not None:
            await asyncio.to_thread(spy.wait, 60)
        finishing = harness.CpuMeter(pid).start()
        # Wait for every job to be noticed (its result fetched) and completed.
        deadline = last_done + 4 * STATUS_INTERVAL + 60
        while True:
            noticed = await fake.acall("first_request_at", "result")
            if len(noticed) >= len(submitted) or time.time() > deadline:
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(3)
        result["finishing"] = finishing.read()
        status_by_job = await fake.acall("request_times", "status")
        by_kind = await fake.acall("counts_by_kind")
        listed = await finished_at(accounts)
        for a in accounts:
            await a.aclose()
    finally:
        server.stop()
        fake.stop()

    notice = [noticed[rid] - j["done_at"] for rid, j in jobs.items() if rid in noticed]
    # Pair the app's jobs with the fake's requests through the unique BRAND in the prompt.
    done_by_brand = {}
    for j in jobs.values():
        for word in (j["prompt"] or "").replace(",", " ").replace(".", " ").split():
            if word.startswith("driver") and word.endswith("x"):
                done_by_brand[word] = j["done_at"]
    complete_delay = [
        datetime.fromisoformat(j["finishedAt"]).timestamp() - done_by_brand[brand]
        for j in listed.values()
        if j.get("finishedAt") and j["status"] == "completed"
        and (brand := j["variables"].get("BRAND")) in done_by_brand
    ]
    status_times = [t for times in status_by_job.values() for t in times]
    gaps = [b - a for times in status_by_job.values() for a, b in itertools.pairwise(times)]
    checks_in_window = sum(1 for t in status_times if w0 <= t < w1)
    window = w1 - w0
    result.update({
        "requests_by_kind": by_kind,
        "statuses": _statuses(listed),
        "notice_delay_s": harness.summary(notice, 2),
        "noticed": len(notice),
        "completion_delay_s": harness.summary(complete_delay, 2),
        "status_check_gap_s": harness.summary(gaps, 2),
        "status_checks_per_job": harness.summary([len(t) for t in status_by_job.values()], 1),
        "steady_window_s": round(window, 1),
        "status_checks_per_s": round(checks_in_window / window, 1),
        # Without a webhook every job is checked every 10 s; with one, once at 30 s and then
        # every 120 s (so the schedule depends on the job's age: not given).
        "status_checks_per_s_expected": None if args.webhook
        else round(len(submitted) / STATUS_INTERVAL, 1),
    })
    steady_pct = round(100 * result["steady"]["cores"], 1)
    result["targets"] = [
        harness.target("driver CPU with all jobs in flight (% of one core)", steady_pct, 25, "<=",
                       " %"),
        harness.target("notice delay p99 (s)", result["notice_delay_s"].get("p99", float("nan")),
                       STATUS_INTERVAL, "<=", " s"),
        harness.target("notice delay max (s)", result["notice_delay_s"].get("max", float("nan")),
                       STATUS_INTERVAL, "<=", " s"),
    ]
    return result


def _statuses(listed: dict[str, dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for j in listed.values():
        out[j["status"]] = out.get(j["status"], 0) + 1
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--accounts", type=int, default=40)
    p.add_argument("--min-seconds", type=float, default=100.0,
                   help="shortest job at the provider (queue + run)")
    p.add_argument("--max-seconds", type=float, default=150.0)
    p.add_argument("--webhook", action="store_true",
                   help="set PUBLIC_BASE_URL: fal's webhooks, a safety check at 30 s and 120 s")
    p.add_argument("--quick", action="store_true", help="200 jobs of 40-60 s")
    p.add_argument("--profile", metavar="FILE",
                   help="py-spy the server during the steady window into FILE")
    p.add_argument("--json", help="output path (default bench-results/driver_scale.json)")
    args = p.parse_args()
    if args.quick:
        args.jobs, args.accounts, args.min_seconds, args.max_seconds = 200, 10, 40.0, 60.0
    out = harness.run(bench(args))
    print()
    st, fin, nd, cd = out["steady"], out["finishing"], out["notice_delay_s"], \
        out["completion_delay_s"]
    print(harness.table([
        ("all in flight (steady)", st["wall_s"], st["cpu_s"], round(100 * st["cores"], 1),
         out["status_checks_per_s"], out["status_checks_per_s_expected"] or "-"),
        ("while finishing", fin["wall_s"], fin["cpu_s"], round(100 * fin["cores"], 1), "", ""),
    ], ["phase", "wall s", "CPU s", "% of a core", "checks/s", "schedule/s"]))
    print()
    print(harness.table([
        ("provider done → driver noticed", nd.get("n"), nd.get("p50"), nd.get("p95"),
         nd.get("p99"), nd.get("max")),
        ("provider done → completed", cd.get("n"), cd.get("p50"), cd.get("p95"), cd.get("p99"),
         cd.get("max")),
    ], ["delay (s)", "n", "p50", "p95", "p99", "max"]))
    gap = out["status_check_gap_s"]
    print(f"gap between two status checks of a job: p50 {gap.get('p50')} s, p99 "
          f"{gap.get('p99')} s, max {gap.get('max')} s")
    print(f"jobs: {out['statuses']}; fal requests: {out['requests_by_kind']}")
    print()
    print(harness.targets_table(out["targets"]))
    if args.profile:
        prof = harness.summarize_profile(args.profile, 40)
        print(f"profile: {prof['samples']} samples in {args.profile}")
        for name, share in prof["inclusive_pct"]:
            print(f"  {share:5.1f} %  {name}")
    name = "driver_scale_webhook" if args.webhook else "driver_scale"
    print(f"wrote {harness.write_results(name, out, args.json)}")


if __name__ == "__main__":
    main()
