"""Finalize throughput and memory: N jobs finishing together, each with an S-MB result,
stored to S3 on a moto server; against a plain boto3 upload_file of the same N files.

Moto runs in a subprocess, the fake fal in another; the app (`python -m app serve`,
STORAGE=s3, DATABASE_URL=mem://) has PUBLIC_BASE_URL set, so that fal's webhook tells it at
once when a job is done. N jobs are submitted and left queued at the fake; then all are
completed in the same instant (the fake sends N signed webhooks) and the driver finalizes
them concurrently: the download from fal's (fake) CDN streamed into an S3 multipart upload
(a copy of it on disk for the poster), then the poster, then the charge. Measured from that
instant to the last job's finishedAt: MB/s, and the server's RSS sampled every 20 ms (peak
minus the RSS just before).

The plain baseline, in the same run and in a process of its own: the same N files (same
size and bytes, on local disk) uploaded with boto3's `upload_file` (default TransferConfig)
from `--plain-workers` threads, once before and once after the app's run; the faster of the
two is the baseline (the harder comparison).

Targets: app throughput ≥ 0.7 × plain; peak RSS growth ≤ 200 MB.

    .venv/bin/python scripts/bench/finalize_throughput.py             # 50 × 20 MB
    .venv/bin/python scripts/bench/finalize_throughput.py --quick     # 10 × 5 MB

Prints a table and writes bench-results/finalize_throughput.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import harness


def make_files(directory: Path, n: int, size: int) -> list[Path]:
    from tests.fakes.fal_server import generated_video

    first = directory / "video-0.mp4"
    with first.open("wb") as out:
        for chunk in generated_video(size):
            out.write(chunk)
    paths = [first]
    for i in range(1, n):
        p = directory / f"video-{i}.mp4"
        shutil.copyfile(first, p)
        paths.append(p)
    return paths


PLAIN = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config
cfg = json.loads(sys.argv[1])
s3 = boto3.client("s3", endpoint_url=cfg["url"], region_name="us-east-1",
                  aws_access_key_id=cfg["key_id"], aws_secret_access_key=cfg["secret"],
                  config=Config(s3={"addressing_style": "path"},
                                max_pool_connections=max(10, cfg["workers"] * 10)))
def put(i_path):
    i, path = i_path
    s3.upload_file(path, cfg["bucket"], f"plain/{cfg['tag']}/{i}.mp4",
                   ExtraArgs={"ContentType": "video/mp4"})
t0 = time.perf_counter()
with ThreadPoolExecutor(cfg["workers"]) as pool:
    list(pool.map(put, enumerate(cfg["paths"])))
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def plain_upload(moto: harness.MotoProcess, paths: list[Path], workers: int, tag: str) -> float:
    cfg = {"url": moto.url, "key_id": moto.key_id, "secret": moto.secret, "bucket": moto.bucket,
           "workers": workers, "tag": tag, "paths": [str(p) for p in paths]}
    out = subprocess.run([sys.executable, "-c", PLAIN, json.dumps(cfg)], capture_output=True,
                         text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def drop_prefix(moto: harness.MotoProcess, prefix: str) -> None:
    s3 = moto.client()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=moto.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=moto.bucket, Key=obj["Key"])


async def bench(args) -> dict[str, Any]:
    size = int(args.size_mb * harness.MB)
    total_mb = args.jobs * size / harness.MB
    work = Path(tempfile.mkdtemp(prefix="bench-finalize-"))
    paths = make_files(work, args.jobs, size)
    moto = harness.MotoProcess().start()
    fake = harness.FakeFalProcess(never_complete=True, video_size=size).start()
    server = harness.AppServer({}, name="finalize")
    server.env = harness.base_env(work / "app", VIDEO_PROVIDER="fal", SIGNUP_CREDITS=10**6,
                                  MAX_ACTIVE_JOBS=args.jobs + 10, PUBLIC_BASE_URL=server.url,
                                  **moto.env(), **fake.env(),
                                  **dict(kv.split("=", 1) for kv in args.server_env))
    result: dict[str, Any] = {"config": {"jobs": args.jobs, "size_mb": args.size_mb,
                                         "total_mb": total_mb,
                                         "plain_workers": args.plain_workers,
                                         "server_env": args.server_env}}
    try:
        plain_before = plain_upload(moto, paths, args.plain_workers, "before")
        drop_prefix(moto, "plain/")
        print(f"plain upload (before): {plain_before:.2f} s, "
              f"{total_mb / plain_before:.1f} MB/s", flush=True)
        server.start()
        pid = server.pid
        print(f"server pid {pid} at {server.url}; moto pid {moto.pid}; fake fal pid {fake.pid}",
              flush=True)
        (acc,) = await harness.signup_many(server.url, 1, "finalize")
        ids = []
        for i in range(args.jobs):
            r = await acc.submit({"BRAND": f"F{i}", "MODEL": "S1"})
            if r.status_code != 202:
                raise RuntimeError(f"submit: {r.status_code} {r.text[:200]}")
            ids.append(r.json()["jobId"])
        deadline = time.time() + 60
        while True:  # every job queued at fal and its lease handed back
            body = (await acc.http.get("/api/jobs", params={"status": "active",
                                                            "limit": 100})).json()
            n_fal = await fake.acall("count", "submit")
            if n_fal >= args.jobs and all(j["status"] == "processing" for j in body["jobs"]):
                break
            if time.time() > deadline:
                raise TimeoutError(f"jobs did not reach fal ({n_fal})")
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)
        rss0 = harness.rss_kib(pid)
        peak_reset = harness.reset_peak(pid)
        cpu = harness.CpuMeter(pid).start()
        fake_cpu, moto_cpu = harness.CpuMeter(fake.pid).start(), harness.CpuMeter(moto.pid).start()
        rids = list((await fake.acall("jobs")).keys())
        with harness.RssSampler(pid, 0.02) as sampler:
            spy = (harness.start_py_spy(pid, args.profile_seconds, args.profile)
                   if args.profile else None)
            t0 = await fake.acall("complete_all", rids)
            deadline = time.time() + 300
            while True:
                body = (await acc.http.get("/api/jobs", params={"limit": 100})).json()
                final = [j for j in body["jobs"] if j["status"] in ("completed", "failed",
                                                                   "canceled")]
                if len(final) >= args.jobs or time.time() > deadline:
                    break
                await asyncio.sleep(0.25)
            if spy is not None:
                await asyncio.to_thread(spy.wait, 120)
        cpu_used = cpu.read()
        others_cpu = {"fake_fal": fake_cpu.read(), "moto": moto_cpu.read()}
        hwm = harness.hwm_kib(pid)
        await acc.aclose()
        done = [j for j in body["jobs"] if j["status"] == "completed"]
        t_end = max(datetime.fromisoformat(j["finishedAt"]).timestamp() for j in done)
        app_seconds = t_end - t0
        stored = moto.client().list_objects_v2(Bucket=moto.bucket, Prefix="users/")
        stored_bytes = sum(o["Size"] for o in stored.get("Contents", []))
        server.stop()
        plain_after = plain_upload(moto, paths, args.plain_workers, "after")
        print(f"plain upload (after): {plain_after:.2f} s, {total_mb / plain_after:.1f} MB/s",
              flush=True)
    finally:
        server.stop()
        fake.stop()
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)

    plain_s = min(plain_before, plain_after)
    app_mbs, plain_mbs = total_mb / app_seconds, total_mb / plain_s
    growth_mb = (sampler.peak - rss0) / 1024
    result.update({
        "app": {"seconds": round(app_seconds, 2), "mb_per_s": round(app_mbs, 1),
                "completed": len(done), "stored_mb": round(stored_bytes / harness.MB, 1),
                "rss_before_kib": rss0, "rss_peak_kib": sampler.peak,
                "rss_growth_mb": round(growth_mb, 1),
                "vmhwm_kib": hwm if peak_reset else None,
                "cpu": cpu_used, "rss_samples": len(sampler.samples),
                "other_processes_cpu": others_cpu},
        "plain": {"seconds_before": round(plain_before, 2), "seconds_after": round(plain_after, 2),
                  "mb_per_s_before": round(total_mb / plain_before, 1),
                  "mb_per_s_after": round(total_mb / plain_after, 1),
                  "mb_per_s": round(plain_mbs, 1)},
        "ratio": round(app_mbs / plain_mbs, 2),
    })
    result["targets"] = [
        harness.target("app MB/s ÷ plain boto3 MB/s", result["ratio"], 0.7, ">="),
        harness.target("peak RSS growth (MB)", round(growth_mb, 1), 200, "<=", " MB"),
    ]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=50)
    p.add_argument("--size-mb", type=float, default=20.0)
    p.add_argument("--plain-workers", type=int, default=8,
                   help="threads calling upload_file in the plain baseline")
    p.add_argument("--quick", action="store_true", help="10 jobs of 5 MB")
    p.add_argument("--server-env", nargs="*", default=[], metavar="NAME=VALUE",
                   help="extra environment for the server (e.g. MALLOC_ARENA_MAX=2)")
    p.add_argument("--profile", metavar="FILE", help="py-spy the server while it finalizes")
    p.add_argument("--profile-seconds", type=float, default=15.0)
    p.add_argument("--json", help="output path (default bench-results/finalize_throughput.json)")
    args = p.parse_args()
    if args.quick:
        args.jobs, args.size_mb = 10, 5.0
    out = harness.run(bench(args))
    a, pl = out["app"], out["plain"]
    print()
    print(harness.table([
        ("app: fal → S3 (streamed), poster, charge", out["config"]["total_mb"], a["seconds"],
         a["mb_per_s"], a["rss_growth_mb"], a["cpu"]["cores"]),
        ("plain boto3 upload_file (faster run)", out["config"]["total_mb"],
         min(pl["seconds_before"], pl["seconds_after"]), pl["mb_per_s"], "", ""),
    ], ["what", "MB", "seconds", "MB/s", "RSS growth MB", "server CPU cores"]))
    oc = a["other_processes_cpu"]
    print(f"during the app's run: fake fal {oc['fake_fal']['cores']} cores, moto "
          f"{oc['moto']['cores']} cores, server {a['cpu']['cores']} cores")
    print(f"plain runs: before {pl['mb_per_s_before']} MB/s, after {pl['mb_per_s_after']} MB/s;"
          f" app stored {a['stored_mb']} MB in {a['completed']} jobs")
    print()
    print(harness.targets_table(out["targets"]))
    if args.profile:
        prof = harness.summarize_profile(args.profile, 40)
        print(f"profile: {prof['samples']} samples in {args.profile}")
        for name, share in prof["inclusive_pct"]:
            print(f"  {share:5.1f} %  {name}")
    print(f"wrote {harness.write_results('finalize_throughput', out, args.json)}")


if __name__ == "__main__":
    main()
