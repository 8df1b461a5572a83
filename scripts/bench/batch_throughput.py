"""A 100-row batch on the local renderer: how long the submission takes (every row checked,
every credit reserved in one transaction) and how long until the last video is in the
library. The server is `python -m app serve` (embedded database, local storage, the local
ffmpeg renderer with its default 2 renders at a time, MAX_ACTIVE_JOBS 5), one person.

    .venv/bin/python scripts/bench/batch_throughput.py            # 100 rows
    .venv/bin/python scripts/bench/batch_throughput.py --quick    # 20 rows

Prints a table and writes bench-results/batch_throughput.json."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import harness


async def measure(url: str, rows: int) -> dict:
    person = await harness.signup(url, f"batch-{uuid.uuid4().hex[:8]}@example.com")
    try:
        body = {"templateSlug": "product-turntable", "startKey": person.start_key,
                "name": "Benchmark", "rows": [{"variables": {"PRODUCT": f"Lamp {i}"}}
                                              for i in range(rows)]}
        started = time.perf_counter()
        r = await person.http.post("/api/batches", json=body)
        submitted = time.perf_counter() - started
        if r.status_code != 202:
            raise RuntimeError(f"submit: {r.status_code} {r.text[:300]}")
        batch_id = r.json()["batchId"]
        first = None
        while True:
            shown = (await person.http.get(f"/api/batches/{batch_id}")).json()
            now = time.perf_counter() - started
            if first is None and shown["completed"]:
                first = now
            if shown["status"] not in ("pending", "processing"):
                break
            await asyncio.sleep(0.25)
        return {"rows": rows, "submit_ms": round(submitted * 1000, 1),
                "first_video_s": round(first or now, 1), "last_video_s": round(now, 1),
                "per_video_s": round(now / rows, 2), "status": shown["status"],
                "completed": shown["completed"], "failed": shown["failed"]}
    finally:
        await person.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = 20 if args.quick else args.rows
    data_dir = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    env = harness.base_env(data_dir, VIDEO_PROVIDER="local", SIGNUP_CREDITS=1_000_000,
                           BATCH_MAX_ROWS=max(100, rows),
                           ALLOWED_HOSTS="127.0.0.1,localhost")
    with harness.AppServer(env) as server:
        cpu = harness.CpuMeter(server.pid).start()
        figures = harness.run(measure(server.url, rows))
        figures["server_cpu"] = cpu.read()
    print(harness.table([(k, v) for k, v in figures.items()], ["figure", "value"]))
    out = harness.write_results("batch_throughput", {
        "machine": harness.machine_info(), **figures})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
