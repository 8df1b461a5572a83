"""The floor of one status check: CPU per fal status request, with nothing else running.

The driver's target (docs/BENCHMARKS.md §5) allows 25 % of one core for 2,000 jobs checked
every 10 s: 200 checks/s, so 1.25 ms of CPU per check, for the request to fal, its share of
a claim round and one database write. This measures the request alone, on the server's
event loop (uvloop), against the fake fal over HTTPS with keep-alive connections:

* `provider`: `FalProvider.status`, the app's call (fal_client → httpx → httpcore → TLS);
* `httpx`: the same GET through one plain `httpx.AsyncClient` (no fal_client), the least a
  Python HTTPS request costs here;

each with 1, 4, 16 and 64 requests in flight (the driver runs up to DRIVER_CONCURRENCY = 64
steps at once; HTTP/1.1 needs a connection per request in flight, and httpcore scans every
pooled connection at each request's start and end). CPU is this process's (all threads),
per request. The fake fal runs in a process of its own.

    .venv/bin/python scripts/bench/status_check_cost.py            # 2,000 requests per row
    .venv/bin/python scripts/bench/status_check_cost.py -n 500

Prints a table and writes bench-results/status_check_cost.json."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import harness
import httpx
import uvloop

ENDPOINT = "fal-ai/kling-video/v2/master/image-to-video"
BUDGET_MS = 1.25  # 25 % of a core / 200 checks per second


async def cpu_per_call(call: Callable[[int], Awaitable[object]], n: int, inflight: int
                       ) -> dict[str, float]:
    sem = asyncio.Semaphore(inflight)

    async def one(i: int) -> None:
        async with sem:
            await call(i)

    await asyncio.gather(*(one(i) for i in range(max(200, inflight * 4))))  # warm the pool
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_ms_per_request": round(1000 * cpu / n, 3), "requests_per_s": round(n / wall)}


async def measure(fake: harness.FakeFalProcess, n: int, levels: list[int]) -> list[dict[str, Any]]:
    os.environ.update(fake.env())
    from app.providers.base import SubmitRequest
    from app.providers.fal import FalProvider

    rows: list[dict[str, Any]] = []
    ids: list[str] = []
    for inflight in levels:
        # a fresh provider (and pool) per level, so its connections match the level
        provider = FalProvider(connections=64)
        while len(ids) < 64:
            ids.append(await provider.submit(SubmitRequest(
                endpoint=ENDPOINT, prompt="a car", image_url="https://127.0.0.1/start.png",
                parameters={}, caption=None, webhook_url=None)))
        handles = [await provider._handle(ENDPOINT, rid) for rid in ids]
        status_urls = [handle.status_url for handle in handles]

        async def via_provider(i: int, provider: FalProvider = provider) -> object:
            return await provider.status(ENDPOINT, ids[i % len(ids)])

        # the same pool limits as the provider's (app/providers/fal.py)
        auth = handles[0].client.headers["Authorization"]
        plain = httpx.AsyncClient(headers={"Authorization": auth}, limits=httpx.Limits(
            max_keepalive_connections=64, max_connections=100))

        async def via_httpx(i: int, plain: httpx.AsyncClient = plain,
                            urls: list[str] = status_urls) -> object:
            response = await plain.get(urls[i % len(urls)], params={"logs": "true"})
            return response.json()

        for name, call in (("provider", via_provider), ("httpx", via_httpx)):
            row = {"client": name, "in_flight": inflight, **await cpu_per_call(call, n, inflight)}
            rows.append(row)
            print(f"{name:9} {inflight:3} in flight: {row['cpu_ms_per_request']:.3f} ms CPU "
                  f"per request, {row['requests_per_s']}/s", flush=True)
        await plain.aclose()
        await provider.aclose()  # its pool's connections do not outlive the level
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=2000, help="requests per row")
    p.add_argument("--in-flight", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--json", help="output path (default bench-results/status_check_cost.json)")
    args = p.parse_args()
    fake = harness.FakeFalProcess(never_complete=True).start()
    try:
        rows = uvloop.run(measure(fake, args.n, args.in_flight))
    finally:
        fake.stop()
    print(harness.table(
        [(r["client"], r["in_flight"], r["cpu_ms_per_request"], r["requests_per_s"],
          f"{100 * r['cpu_ms_per_request'] / BUDGET_MS:.0f} %") for r in rows],
        ["client", "in flight", "CPU ms per request", "requests/s",
         f"of the {BUDGET_MS} ms budget per check"]))
    harness.write_results("status_check_cost", {"rows": rows, "budget_ms": BUDGET_MS},
                          args.json)


if __name__ == "__main__":
    main()
