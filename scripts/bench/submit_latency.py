"""Submit latency: N concurrent clients (N accounts) submitting video jobs for S seconds
against a running server (fake fal, DATABASE_URL=mem://), with GET /health sampled under
the same load in the same run.

The server is `python -m app serve` in a subprocess with the fake fal (its own process;
jobs stay queued there, so the driver submits every job and then checks each every 10 s,
as it would in production). Every account has an uploaded start image, plenty of credits
(SIGNUP_CREDITS) and a high active-job cap (MAX_ACTIVE_JOBS). The submitting clients run in
`--procs` worker processes (httpx.AsyncClient per account, HTTP/1.1 keep-alive, uvloop),
each a closed loop: submit, wait for the answer, submit again. /health is sampled from the
parent process every `--health-interval` s by `--health-clients` loops. Only requests that
start inside the measured window (after `--warmup`) count.

Targets: submit p99 ≤ 3 × /health p99, and ≥ 500 submits/s.

    .venv/bin/python scripts/bench/submit_latency.py            # 50 clients, 20 s
    .venv/bin/python scripts/bench/submit_latency.py --quick    # 10 clients, 5 s

Prints a table and writes bench-results/submit_latency.json."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any

import harness


# --- a load worker (child process) ----------------------------------------------------------
def _worker(conn, accounts: list[dict[str, Any]], start_at: float, stop_at: float) -> None:
    harness.run(_work(conn, accounts, start_at, stop_at))


async def _work(conn, accounts: list[dict[str, Any]], start_at: float, stop_at: float) -> None:
    import httpx

    samples: list[tuple[float, float, int]] = []  # (start wall time, latency ms, status)
    clients = []

    async def loop(acc: harness.Account) -> None:
        http = acc.client(limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        clients.append(http)
        body = {"templateSlug": harness.TEMPLATE, "startKey": acc.start_key,
                "variables": harness.VARIABLES}
        await asyncio.sleep(max(0.0, start_at - time.time()))
        while (t0 := time.time()) < stop_at:
            p0 = time.perf_counter()
            try:
                r = await http.post("/api/templates/video", json=body)
                status = r.status_code
            except httpx.HTTPError:
                status = 0
            samples.append((t0, (time.perf_counter() - p0) * 1000, status))

    accs = [harness.Account.from_portable(a) for a in accounts]
    await asyncio.gather(*(loop(a) for a in accs))
    for http in clients:
        await http.aclose()
    conn.send(samples)
    conn.close()


# --- the parent -----------------------------------------------------------------------------
async def bench(args) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-submit-"))
    fake = harness.FakeFalProcess(queue_time=args.job_seconds, run_time=60).start()
    env = harness.base_env(data_dir, VIDEO_PROVIDER="fal", STORAGE="local",
                           SIGNUP_CREDITS=10**9, MAX_ACTIVE_JOBS=10**7, **fake.env())
    server = harness.AppServer(env, name="submit")
    try:
        server.start()
        print(f"server pid {server.pid} at {server.url}; fake fal pid {fake.pid}", flush=True)
        accounts = await harness.signup_many(server.url, args.clients, "submit")
        for a in accounts:
            await a.aclose()
        portable = [a.portable() for a in accounts]
        ctx = mp.get_context("spawn")
        start_at = time.time() + 3.0  # workers up and connected by then
        window_start = start_at + args.warmup
        stop_at = window_start + args.seconds
        workers, pipes = [], []
        for i in range(args.procs):
            parent, child = ctx.Pipe(duplex=False)
            share = portable[i::args.procs]
            p = ctx.Process(target=_worker, args=(child, share, start_at, stop_at), daemon=True)
            p.start()
            workers.append(p)
            pipes.append(parent)
        submitted_before = await fake.acall("count", "submit")
        cpu = harness.CpuMeter(server.pid)
        fake_cpu = harness.CpuMeter(fake.pid)
        rss0 = harness.rss_kib(server.pid)

        async def measure_window() -> dict[str, Any]:
            await asyncio.sleep(max(0.0, window_start - time.time()))
            cpu.start()
            fake_cpu.start()
            spy = (harness.start_py_spy(server.pid, args.seconds, args.profile)
                   if args.profile else None)
            await asyncio.sleep(max(0.0, stop_at - time.time()))
            if spy is not None:
                await asyncio.to_thread(spy.wait, 30)
            return {"server_cpu": cpu.read(), "fake_fal_cpu": fake_cpu.read()}

        probes = [harness.health_probe(server.url, start_at, stop_at, args.health_interval)
                  for _ in range(args.health_clients)]
        window, *health_lists = await asyncio.gather(measure_window(), *probes)
        samples: list[tuple[float, float, int]] = []
        for parent in pipes:
            samples += await asyncio.to_thread(parent.recv)
        for p in workers:
            p.join(30)
        submitted_after = await fake.acall("count", "submit")
        rss1 = harness.rss_kib(server.pid)
    finally:
        server.stop()
        fake.stop()

    def in_window(rows):
        return [r for r in rows if window_start <= r[0] < stop_at]

    subs = in_window(samples)
    ok = [ms for _t, ms, st in subs if st == 202]
    errors: dict[str, int] = {}
    for _t, _ms, st in subs:
        if st != 202:
            errors[str(st)] = errors.get(str(st), 0) + 1
    health = [ms for rows in health_lists for _t, ms, st in in_window(rows) if st == 200]
    sub_sum, health_sum = harness.summary(ok), harness.summary(health)
    throughput = len(ok) / args.seconds
    ratio = round(sub_sum["p99"] / health_sum["p99"], 2) if ok and health else float("nan")
    targets = [
        harness.target("submit p99 ≤ 3 × /health p99 (ratio)", ratio, 3.0, "<="),
        harness.target("submits per second", round(throughput, 1), 500, ">="),
    ]
    return {
        "config": {"clients": args.clients, "seconds": args.seconds, "warmup": args.warmup,
                   "procs": args.procs, "health_clients": args.health_clients,
                   "health_interval": args.health_interval, "job_seconds": args.job_seconds},
        "submit_ms": sub_sum, "health_ms": health_sum, "submits_per_s": round(throughput, 1),
        "errors": errors, "p99_ratio": ratio,
        "driver_submitted_to_fal_in_run": submitted_after - submitted_before,
        "server_rss_kib": {"before": rss0, "after": rss1},
        **window, "targets": targets,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--procs", type=int, default=2, help="load-client processes")
    p.add_argument("--health-clients", type=int, default=1)
    p.add_argument("--health-interval", type=float, default=0.02)
    p.add_argument("--job-seconds", type=float, default=600.0,
                   help="how long each job stays queued at the fake fal")
    p.add_argument("--quick", action="store_true", help="10 clients for 5 s")
    p.add_argument("--profile", metavar="FILE",
                   help="py-spy the server during the window into FILE (collapsed stacks)")
    p.add_argument("--json", help="output path (default bench-results/submit_latency.json)")
    args = p.parse_args()
    if args.quick:
        args.clients, args.seconds, args.warmup = 10, 5.0, 1.0
    out = harness.run(bench(args))
    print()
    s, h = out["submit_ms"], out["health_ms"]
    print(harness.table([
        ("POST /api/templates/video", s.get("n"), s.get("p50"), s.get("p95"), s.get("p99"),
         s.get("max"), out["submits_per_s"]),
        ("GET /health", h.get("n"), h.get("p50"), h.get("p95"), h.get("p99"), h.get("max"),
         round(h.get("n", 0) / args.seconds, 1)),
    ], ["request", "n", "p50 ms", "p95 ms", "p99 ms", "max ms", "per s"]))
    print(f"errors: {out['errors'] or 'none'}; server CPU {out['server_cpu']['cores']:.2f} "
          f"cores, fake fal {out['fake_fal_cpu']['cores']:.2f}; driver submitted "
          f"{out['driver_submitted_to_fal_in_run']} jobs to fal during the run")
    print()
    print(harness.targets_table(out["targets"]))
    if args.profile:
        prof = harness.summarize_profile(args.profile, 30)
        print(f"profile: {prof['samples']} samples in {args.profile}")
        for name, share in prof["inclusive_pct"]:
            print(f"  {share:5.1f} %  {name}")
    print(f"wrote {harness.write_results('submit_latency', out, args.json)}")


if __name__ == "__main__":
    main()
