"""Hostile uploads: small image files that are expensive to decode, uploaded at once and over
and over, while GET /health is timed against the same server.

The server is `python -m app serve` in a subprocess (DATABASE_URL=mem://, local storage,
local renderer). Two scenarios run one after the other, each for `--seconds` after a
`--warmup`:

* `over_limit`: the issue's three images, one closed-loop uploader each (upload, wait for the
  answer, upload again): a 12000 x 4166 WebP (50 MP in ~90 KB), a 7000 x 7000 PNG (49 MP in
  ~140 KB) and a decompression bomb (a 20000 x 20000 1-bit PNG, 400 MP in ~50 KB). All three
  are over the pixel limit and should be refused from their headers.
* `largest_accepted`: three uploaders of the largest image the limit lets through, a 7300 x 5470
  WebP (39.9 MP in ~100 KB): each upload is really decoded (about 0.5 s of CPU).

/health is sampled every `--health-interval` s from this process during both, and once on
an idle server for reference. Target: /health p99 < 100 ms under each scenario.

    .venv/bin/python scripts/bench/hostile_uploads.py             # 20 s per scenario
    .venv/bin/python scripts/bench/hostile_uploads.py --quick     # 5 s per scenario
    .venv/bin/python scripts/bench/hostile_uploads.py --app-dir /tmp/old   # another checkout,
        # e.g. made by `git archive COMMIT app scripts templates static | tar -x -C /tmp/old`

Prints a table and writes bench-results/hostile_uploads.json."""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness

HEALTH_P99_MS = 100.0
SCENARIOS = ("over_limit", "largest_accepted")


# --- the images -----------------------------------------------------------------------------
def _encode(mode: str, size: tuple[int, int], fmt: str, **kw: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, 0).save(buf, fmt, **kw)
    return buf.getvalue()


def _png_bomb(width: int, height: int) -> bytes:
    from tests.integration.api_support import png_bomb

    return png_bomb(width, height)


def images() -> dict[str, dict[str, tuple[str, bytes, str]]]:
    """{scenario: {label: (file name, bytes, content type)}}"""
    return {
        "over_limit": {
            "webp 12000x4166": ("wide.webp", _encode("RGB", (12000, 4166), "WEBP", quality=1),
                                "image/webp"),
            "png 7000x7000": ("square.png", _encode("RGB", (7000, 7000), "PNG"), "image/png"),
            "png bomb 20000x20000": ("bomb.png", _png_bomb(20_000, 20_000), "image/png"),
        },
        "largest_accepted": {
            f"webp 7300x5470 #{i}": (f"big{i}.webp", _encode("RGB", (7300, 5470), "WEBP",
                                                             quality=1, method=0), "image/webp")
            for i in (1, 2, 3)
        },
    }


# --- load and probe -------------------------------------------------------------------------
async def uploader(account: harness.Account, upload: tuple[str, bytes, str], start_at: float,
                   stop_at: float) -> list[tuple[float, float, int]]:
    import httpx

    samples = []
    async with account.client(timeout=120) as http:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        while (t0 := time.time()) < stop_at:
            p0 = time.perf_counter()
            try:
                status = (await http.post("/api/library", files={"file": upload})).status_code
            except httpx.HTTPError:
                status = 0
            samples.append((t0, (time.perf_counter() - p0) * 1000, status))
    return samples


async def scenario(server: harness.AppServer, accounts: list[harness.Account],
                   uploads: dict[str, tuple[str, bytes, str]], args) -> dict[str, Any]:
    start_at = time.time() + 0.5
    window_start, stop_at = start_at + args.warmup, start_at + args.warmup + args.seconds
    cpu = harness.CpuMeter(server.pid)

    async def cpu_window() -> dict[str, float]:
        await asyncio.sleep(max(0.0, window_start - time.time()))
        cpu.start()
        await asyncio.sleep(max(0.0, stop_at - time.time()))
        return cpu.read()

    loads = [uploader(acc, up, start_at, stop_at)
             for acc, up in zip(accounts, uploads.values(), strict=True)]
    server_cpu, health, *per_image = await asyncio.gather(
        cpu_window(),
        harness.health_probe(server.url, start_at, stop_at, args.health_interval, timeout=60),
        *loads)

    def in_window(rows):
        return [r for r in rows if window_start <= r[0] < stop_at]

    out: dict[str, Any] = {"images": {}}
    for (label, (_name, data, _ctype)), rows in zip(uploads.items(), per_image, strict=True):
        rows = in_window(rows)
        statuses: dict[str, int] = {}
        for _t, _ms, st in rows:
            statuses[str(st)] = statuses.get(str(st), 0) + 1
        out["images"][label] = {"bytes": len(data), "statuses": statuses,
                                "upload_ms": harness.summary([ms for _t, ms, _s in rows])}
    ok = [ms for _t, ms, st in in_window(health) if st == 200]
    out["health_ms"] = harness.summary(ok)
    out["health_errors"] = sum(1 for _t, _ms, st in in_window(health) if st != 200)
    out["server_cpu"] = server_cpu
    return out


async def bench(args) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    env = harness.base_env(data_dir, VIDEO_PROVIDER="local", STORAGE="local")
    cmd = None
    if args.app_dir:  # that checkout's `app` package ahead of this one (cwd is this one)
        boot = (f"import sys; sys.path.insert(0, {str(Path(args.app_dir).resolve())!r}); "
                "sys.argv[1:1] = ['serve']; from app.cli import main; main()")
        cmd = [sys.executable, "-c", boot, "--host", "127.0.0.1"]
    sets = images()
    server = harness.AppServer(env, name="hostile", cmd=cmd)
    results: dict[str, Any] = {}
    try:
        server.start()
        print(f"server pid {server.pid} at {server.url}", flush=True)
        accounts = await harness.signup_many(server.url, 3, "hostile", upload=False)
        for a in accounts:
            await a.aclose()
        now = time.time()
        idle = await harness.health_probe(
            server.url, now + 0.2, now + 0.2 + min(5.0, args.seconds), args.health_interval,
            timeout=60)
        results["idle"] = {"health_ms": harness.summary([ms for _t, ms, st in idle
                                                         if st == 200])}
        for name in SCENARIOS:
            print(f"scenario {name} …", flush=True)
            results[name] = await scenario(server, accounts, sets[name], args)
        results["server_rss_kib"] = harness.rss_kib(server.pid)
    finally:
        server.stop()
    targets = [harness.target(f"/health p99 under {name} uploads",
                              results[name]["health_ms"].get("p99", float("nan")),
                              HEALTH_P99_MS, "<=", " ms")
               for name in SCENARIOS]
    return {"config": {"seconds": args.seconds, "warmup": args.warmup,
                       "health_interval": args.health_interval, "app_dir": args.app_dir},
            **results, "targets": targets}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per scenario")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--health-interval", type=float, default=0.02)
    p.add_argument("--app-dir", help="run the server from this checkout (a before/after)")
    p.add_argument("--quick", action="store_true", help="5 s per scenario")
    p.add_argument("--json", help="output path (default bench-results/hostile_uploads.json)")
    args = p.parse_args()
    if args.quick:
        args.seconds, args.warmup = 5.0, 1.0
    out = harness.run(bench(args))
    print()
    rows = []
    for name in SCENARIOS:
        for label, img in out[name]["images"].items():
            u = img["upload_ms"]
            statuses = ", ".join(f"{k}×{v}" for k, v in sorted(img["statuses"].items()))
            rows.append((name, label, img["bytes"], statuses, u.get("p50"), u.get("p99"),
                         u.get("max")))
    print(harness.table(rows, ["scenario", "image", "bytes", "answers", "upload p50 ms",
                               "p99 ms", "max ms"]))
    print()
    hrows = [("idle", out["idle"]["health_ms"])] + [(n, out[n]["health_ms"])
                                                    for n in SCENARIOS]
    print(harness.table([(n, h.get("n"), h.get("p50"), h.get("p95"), h.get("p99"), h.get("max"))
                         for n, h in hrows],
                        ["GET /health during", "n", "p50 ms", "p95 ms", "p99 ms", "max ms"]))
    cpu = ", ".join(f"{n} {out[n]['server_cpu']['cores']:.2f}" for n in SCENARIOS)
    print(f"server CPU in cores: {cpu} (the web process only, not its decoder processes)")
    print()
    print(harness.targets_table(out["targets"]))
    print(f"wrote {harness.write_results('hostile_uploads', out, args.json)}")


if __name__ == "__main__":
    main()
