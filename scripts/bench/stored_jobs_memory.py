"""Resident memory per stored job on the embedded default (`surrealkv://`), whose engine keeps
its index in the app's process (docs/BENCHMARKS.md, "Memory per stored job").

A writer process opens a fresh store with the real schema and template catalogue, 100
people (each with an uploaded image), and takes jobs one after another through the database
writes of a job's life, made by the app's own code: `JobService.create`, the driver's
claims (`jobs.claim_many`), its moves (`JobService.move`, with the lease handed back in the
move as the driver does), `jobs.accept_webhook`, `jobs.release`, the charge with its ledger
entry and library item, and the notifier's `mark_announced`. Only the provider and the
storage are left out (they write nothing to the database). `--life webhook` is the soak's
job (fal calls back: 8 writes); `--life polling --checks C` is a job checked C times without
a webhook (C = 9 gives tests/integration/test_driver_writes.py's 24 writes, plus the
announcement). Every `db.write` is counted.

Reported, for N in `--at`:
* running: the writer's RSS, less its RSS before the first job, per job (and every 1,000
  jobs for the curve);
* reopen: a fresh process that opens a copy of the store at N (taken while the writer
  paused) and runs one query, less the same for the store before any job;
* pruned: the copy's timelines pruned (`jobs.prune_timelines`, as `jobs prune` does), in
  that process, then a fresh process opening the pruned copy; and the writer itself pruning
  at the largest N (running, pruned), before and after glibc's `malloc_trim(0)`;
* compacted: the copy backed up (`python -m app backup`) and restored into an empty data
  directory (`python -m app restore`), so that every record is written once, then opened,
  with and without its timelines;
* extrapolated to 100,000 jobs from the slope of the running curve and the reopen figures.

    .venv/bin/python scripts/bench/stored_jobs_memory.py                     # 1k, 5k, 20k
    .venv/bin/python scripts/bench/stored_jobs_memory.py --at 1000,5000,20000,50000
    .venv/bin/python scripts/bench/stored_jobs_memory.py --quick             # 200, 1k
    .venv/bin/python scripts/bench/stored_jobs_memory.py --life polling --checks 9
    .venv/bin/python scripts/bench/stored_jobs_memory.py --engine 2000,400,10

`--engine PAD,KEYS,WRITES` is the engine alone, in this process: KEYS records of a PAD-byte
value, each written WRITES times (`UPSERT`), and the RSS it took per write. It tells what the
store keeps: a new key, or every version of a record.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import harness

PEOPLE = 100
JOBS_100K = 100_000


# --- in the writer and opener processes --------------------------------------------------
def rss() -> int:
    gc.collect()
    return harness.rss_kib(os.getpid())


def trimmed_rss() -> int:
    """RSS after glibc hands freed heap pages back: what a prune freed, not just marked free."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return -1
    return rss()


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def open_db(data_dir: Path):
    from app.db.connection import Database
    from app.settings import Settings

    return Database(Settings(data_dir=data_dir, database_url=None))  # surrealkv in data_dir


def counting(db: Any) -> list[int]:
    """Count every write the app's code makes on `db` (one cell, so the caller reads it)."""
    count = [0]
    original = db.write

    async def write(sql: str, vars: dict[str, Any] | None = None) -> list[Any]:
        count[0] += 1
        return await original(sql, vars)

    db.write = write
    return count


async def prune(db: Any) -> tuple[int, float]:
    """Every ended job's timeline (older than 0 s): what `jobs prune` deletes once a day."""
    from app.db import jobs as jobs_db

    t = time.perf_counter()
    n = await jobs_db.prune_timelines(db, 0)
    return n, time.perf_counter() - t


async def writer(args: argparse.Namespace) -> None:
    from app.db import jobs as jobs_db
    from app.db import library as library_db
    from app.db import templates as templates_db
    from app.db import users as users_db
    from app.db.schema import apply_schema
    from app.jobs.service import ACTIVE_VALUES, JobService
    from app.jobs.states import Status

    data_dir = Path(args.dir)
    db = open_db(data_dir)
    await db.connect()
    await apply_schema(db)
    await templates_db.sync_catalogue(db)
    people: list[tuple[str, str]] = []
    for i in range(PEOPLE):
        user = await users_db.create(db, f"p{i}@example.com", "x", 10**12)
        key = f"users/{user.id}/library/start.png"
        await library_db.add(db, user.id, key, "image", "image/png", 40_000, "start.png")
        people.append((user.id, key))

    async def nothing(*_: Any) -> None:
        return None

    service = JobService(db, db.settings, publish=nothing)
    writes = counting(db)
    driver = f"{os.getpid()}-bench"
    checkpoints = sorted(args.at)
    base = rss()
    emit(event="start", rss_kib=base)
    began = time.perf_counter()

    async def claim(job_id: str) -> None:
        await jobs_db.claim_many(db, [job_id], driver, 30, ACTIVE_VALUES)

    async def life(n: int) -> None:
        owner, start_key = people[n % PEOPLE]
        job = await service.create(owner, "car-commercial", start_key,
                                   {"BRAND": "Aurora", "MODEL": f"S{n}"}, "fal")
        rid = uuid.uuid4().hex
        webhook = args.life == "webhook"
        await claim(job.id)  # submit
        await service.move(job.id, Status.QUEUED, lease=driver, reason="submitted to provider",
                           fields={"provider_request_id": rid, "webhook": webhook,
                                   "started_at": job.created_at, "checks": 0, "attempts": 0,
                                   **jobs_db.released(10)})
        if webhook:  # fal calls back when it is done
            await jobs_db.accept_webhook(db, rid, job.id, ACTIVE_VALUES, 7200, "fal webhook")
        else:
            for check in range(1, args.checks + 1):
                await claim(job.id)
                if check == 1:  # the first check sees it running (a log line, a move)
                    await service.move(job.id, Status.PROCESSING, lease=driver, fields={
                        "checks": check, "attempts": 0, "queue_position": None,
                        "last_log": "Generating frames", **jobs_db.released(10)})
                else:  # nothing new: one release carrying the count
                    await jobs_db.release(db, job.id, driver, 10, checks=check, attempts=0)
        await claim(job.id)  # the step that sees it finished, then saves it
        await service.move(job.id, Status.FINALIZING, lease=driver, reason="provider finished",
                           fields={"queue_position": None, "attempts": 0})
        key = f"users/{owner}/library/videos/{job.id}.mp4"
        done = await service.move(
            job.id, Status.COMPLETED, lease=driver, reason="stored and charged",
            fields={"result_key": key, "result_size": 1_500_000, "poster_key": key + ".jpg"},
            library={"key": key, "kind": "video", "content_type": "video/mp4",
                     "size": 1_500_000, "job": job.id, "name": f"{job.template_name}.mp4",
                     "poster_key": key + ".jpg"})
        assert done is not None and done.status == Status.COMPLETED, done
        await jobs_db.mark_announced(db, [job.id])  # its end reached an open page

    n = 0
    for goal in checkpoints:
        while n < goal:
            await life(n)
            n += 1
            if n % args.every == 0 or n == goal:
                now = rss()
                emit(event="progress", n=n, rss_kib=now, grown_kib=now - base,
                     writes=writes[0], seconds=round(time.perf_counter() - began, 1),
                     load=os.getloadavg()[0])
        emit(event="checkpoint", n=n)  # the parent copies the store now: no write runs
        sys.stdin.readline()
    count = await db.read_one("SELECT count() AS n FROM video_job GROUP ALL")
    before = rss()
    pruned, seconds = await prune(db)
    emit(event="pruned", n=n, jobs_counted=count[0]["n"], jobs_pruned=pruned,
         prune_seconds=round(seconds, 1), rss_before_kib=before, rss_after_kib=rss(),
         rss_after_trim_kib=trimmed_rss(), base_kib=base)
    await db.close()


async def engine(pad: int, keys: int, writes: int) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="engine-"))
    db = open_db(data_dir)
    await db.connect()
    await db.write("DEFINE TABLE kv SCHEMALESS")
    before = rss()
    for key in range(keys):
        for version in range(writes):
            await db.write("UPSERT type::thing('kv', $id) CONTENT { v: $v, pad: $pad }",
                           {"id": key, "v": version, "pad": "x" * pad})
    grown = rss() - before
    print(f"{keys} keys × {writes} writes of {pad} B: RSS +{grown} KiB, "
          f"{grown * 1024 / (keys * writes):.0f} B per write", flush=True)
    await db.close()
    shutil.rmtree(data_dir, ignore_errors=True)


async def opener(args: argparse.Namespace) -> None:
    """A fresh process opening a copy of the store: what the app holds after a restart."""
    from app.db import jobs as jobs_db  # noqa: F401 - the app's imports, as at start

    before = rss()
    db = open_db(Path(args.dir))
    await db.connect()
    await db.read("RETURN 1")
    opened = rss()
    rows = await db.read_one("SELECT count() AS n FROM video_job GROUP ALL")
    events = await db.read_one("SELECT count() AS n FROM job_event GROUP ALL")
    out = {"event": "opened", "rss_before_open_kib": before, "rss_kib": opened,
           "rss_after_count_kib": rss(), "jobs": rows[0]["n"] if rows else 0,
           "job_events": events[0]["n"] if events else 0}
    if args.prune:
        out["jobs_pruned"], secs = await prune(db)
        out.update(prune_seconds=round(secs, 1), rss_after_prune_kib=rss(),
                   rss_after_trim_kib=trimmed_rss())
    await db.close()
    emit(**out)


# --- the parent ---------------------------------------------------------------------------
def child(role: str, *extra: str) -> list[str]:
    return [sys.executable, __file__, "--role", role, *extra]


def run_opener(store: Path, prune_it: bool = False) -> dict[str, Any]:
    out = subprocess.run(child("open", "--dir", str(store), *(["--prune"] if prune_it else [])),
                         capture_output=True, text=True, check=True, cwd=harness.ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def compacted(store: Path, into: Path) -> Path:
    """`python -m app backup` of `store`, restored (`python -m app restore`) into `into`: a
    store in which every record is written once, what an operator can do to shrink one."""
    env = {k: v for k, v in harness.base_env(store, SECRET_KEY="bench").items()
           if k != "DATABASE_URL"}  # the embedded default in DATA_DIR
    out = subprocess.run([sys.executable, "-m", "app", "backup"], env=env, cwd=harness.ROOT,
                         capture_output=True, text=True, check=True).stdout
    archive = next(line.split("written to ", 1)[1].strip() for line in out.splitlines()
                   if line.startswith("written to "))
    into.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "app", "restore", archive],
                   env={**env, "DATA_DIR": str(into)}, cwd=harness.ROOT, capture_output=True,
                   text=True, check=True)
    return into


def compact_and_open(store: Path, into: Path, n: int) -> dict[str, Any]:
    """`compacted` then `run_opener`; {"rss_kib": None, "error": …} when the backup fails
    (at 50,000 unpruned jobs on the loaded machine, a query of the backup's snapshot ran
    past the app's 60 s query timeout)."""
    try:
        opened = run_opener(compacted(store, into))
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-1:]
        print(f"  compaction of {n} jobs failed: {tail}", flush=True)
        return {"rss_kib": None, "error": tail}
    assert opened["jobs"] == n, (opened, n)
    return opened


def per_job(opened: dict[str, Any], empty: dict[str, Any], n: int) -> float | None:
    if opened["rss_kib"] is None:
        return None
    return round((opened["rss_kib"] - empty["rss_kib"]) / n, 2)


def store_size_mb(data_dir: Path) -> float:
    return round(sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file()) / 1e6, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--at", default="1000,5000,20000",
                    help="job counts at which to measure (comma-separated)")
    ap.add_argument("--life", choices=["webhook", "polling"], default="webhook")
    ap.add_argument("--checks", type=int, default=9, help="status checks per job (polling)")
    ap.add_argument("--every", type=int, default=1000, help="RSS sample every N jobs")
    ap.add_argument("--quick", action="store_true", help="--at 200,1000 --every 200")
    ap.add_argument("--json", help="where to write the results")
    ap.add_argument("--keep", action="store_true", help="keep the stores (printed path)")
    ap.add_argument("--engine", metavar="PAD,KEYS,WRITES",
                    help="the engine alone: KEYS records of PAD bytes, each written WRITES times")
    ap.add_argument("--role", choices=["write", "open"], help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--prune", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.at, args.every = "200,1000", 200
    args.at = [int(x) for x in str(args.at).split(",") if x]
    if args.engine:
        pad, keys, writes = (int(x) for x in args.engine.split(","))
        asyncio.run(engine(pad, keys, writes))
        return
    if args.role == "write":
        asyncio.run(writer(args))
        return
    if args.role == "open":
        asyncio.run(opener(args))
        return

    work = Path(tempfile.mkdtemp(prefix="stored-jobs-"))
    live = work / "live"
    snaps: dict[int, Path] = {}
    curve: list[dict[str, Any]] = []
    pruned_running: dict[str, Any] = {}
    started = time.time()
    load_start = os.getloadavg()
    print(f"life {args.life}" + (f", {args.checks} checks" if args.life == "polling" else "")
          + f"; measuring at {args.at} jobs; store in {work}", flush=True)
    proc = subprocess.Popen(
        child("write", "--dir", str(live), "--at", ",".join(map(str, args.at)),
              "--life", args.life, "--checks", str(args.checks), "--every", str(args.every)),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=harness.ROOT)
    assert proc.stdin and proc.stdout
    base = 0
    try:
        for line in proc.stdout:
            msg = json.loads(line)
            if msg["event"] == "start":
                base = msg["rss_kib"]
                # the store before any job: the reopen figures' baseline
                snaps[0] = work / "snap-0"
                curve.append({"n": 0, "rss_kib": base, "grown_kib": 0, "writes": 0})
            elif msg["event"] == "progress":
                curve.append(msg)
                print(f"{msg['n']:>7} jobs  RSS {msg['rss_kib'] / 1024:7.1f} MiB "
                      f"(+{msg['grown_kib'] / 1024:.1f}, {msg['grown_kib'] / msg['n']:.1f} KiB/job)"
                      f"  {msg['writes'] / msg['n']:.1f} writes/job  {msg['seconds']} s"
                      f"  load {msg['load']:.1f}", flush=True)
            elif msg["event"] == "checkpoint":
                snaps[msg["n"]] = work / f"snap-{msg['n']}"
                shutil.copytree(live / "db", snaps[msg["n"]] / "db")
                proc.stdin.write("go\n")
                proc.stdin.flush()
            elif msg["event"] == "pruned":
                pruned_running = msg
                print(f"writer pruned {msg['jobs_pruned']} timelines in "
                      f"{msg['prune_seconds']} s: RSS {msg['rss_before_kib']} → "
                      f"{msg['rss_after_kib']} KiB ({msg['rss_after_trim_kib']} after "
                      f"malloc_trim; {msg['base_kib']} before the first job)", flush=True)
        if proc.wait() != 0:
            raise SystemExit(f"the writer failed ({proc.returncode})")
    finally:
        if proc.poll() is None:
            proc.kill()
    # The empty store: the same schema, catalogue and people, no job (made by a writer at 0).
    subprocess.run(child("write", "--dir", str(snaps[0]), "--at", "0"), input="go\n",
                   capture_output=True, text=True, check=True, cwd=harness.ROOT)

    rows = []
    empty = run_opener(snaps[0])
    for n in sorted(k for k in snaps if k):
        point = next(c for c in curve if c["n"] == n)
        size = store_size_mb(snaps[n] / "db")
        opened = run_opener(snaps[n])
        assert opened["jobs"] == n, (opened, n)  # the copy holds every job
        compact = compact_and_open(snaps[n], work / f"compact-{n}", n)
        pruning = run_opener(snaps[n], prune_it=True)
        reopened = run_opener(snaps[n])
        compact_pruned = compact_and_open(snaps[n], work / f"compact-pruned-{n}", n)
        rows.append({
            "jobs": n, "writes_per_job": round(point["writes"] / n, 1),
            "running_kib_per_job": round(point["grown_kib"] / n, 2),
            "running_grown_mib": round(point["grown_kib"] / 1024, 1),
            "reopen_kib_per_job": round((opened["rss_kib"] - empty["rss_kib"]) / n, 2),
            "reopen_after_count_kib_per_job": round(
                (opened["rss_after_count_kib"] - empty["rss_after_count_kib"]) / n, 2),
            "pruned_in_reopened_process_kib_per_job": round(
                (pruning["rss_after_trim_kib"] - empty["rss_kib"]) / n, 2),
            "reopen_after_prune_kib_per_job": round(
                (reopened["rss_kib"] - empty["rss_kib"]) / n, 2),
            "compacted_kib_per_job": per_job(compact, empty, n),
            "compacted_pruned_kib_per_job": per_job(compact_pruned, empty, n),
            "compacted_store_mb": store_size_mb(work / f"compact-{n}" / "db"),
            "compacted_pruned_store_mb": store_size_mb(work / f"compact-pruned-{n}" / "db"),
            "job_events": opened["job_events"], "job_events_after_prune": reopened["job_events"],
            "prune_seconds": pruning["prune_seconds"], "store_mb": size,
            "store_after_prune_mb": store_size_mb(snaps[n] / "db"),
            "opened": opened, "pruning": pruning, "reopened": reopened,
            "compacted": compact, "compacted_pruned": compact_pruned,
        })
        r = rows[-1]
        print(f"{n:>7} jobs  KiB/job: running {r['running_kib_per_job']:.1f}, reopened "
              f"{r['reopen_kib_per_job']:.1f}, pruned+reopened "
              f"{r['reopen_after_prune_kib_per_job']:.1f}, compacted "
              f"{r['compacted_kib_per_job']}, pruned+compacted "
              f"{r['compacted_pruned_kib_per_job']}; store {size} MB", flush=True)

    # The running slope: least squares over the curve past the first checkpoint's warm-up.
    pts = [(c["n"], c["grown_kib"]) for c in curve if c["n"] >= min(args.at)]
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    slope = sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else my / mx
    last = rows[-1]
    n_max = last["jobs"]
    per_100k = {
        "running_mib": round(slope * JOBS_100K / 1024),
        "reopen_mib": round(last["reopen_kib_per_job"] * JOBS_100K / 1024),
        "reopen_after_prune_mib": round(last["reopen_after_prune_kib_per_job"] * JOBS_100K / 1024),
    }
    for name in ("compacted", "compacted_pruned"):
        done = [r for r in rows if r[f"{name}_kib_per_job"] is not None]
        if done:  # the largest store whose backup succeeded
            per_100k[f"{name}_mib"] = round(done[-1][f"{name}_kib_per_job"] * JOBS_100K / 1024)
    if pruned_running:
        grown_after = pruned_running["rss_after_trim_kib"] - pruned_running["base_kib"]
        per_100k["running_after_prune_mib"] = round(grown_after / n_max * JOBS_100K / 1024)
    print()
    print(harness.table(
        [(r["jobs"], r["writes_per_job"], r["running_kib_per_job"], r["reopen_kib_per_job"],
          r["pruned_in_reopened_process_kib_per_job"], r["reopen_after_prune_kib_per_job"],
          r["compacted_kib_per_job"], r["compacted_pruned_kib_per_job"],
          f"{r['job_events']} → {r['job_events_after_prune']}",
          f"{r['store_mb']} / {r['compacted_store_mb']} / {r['compacted_pruned_store_mb']}")
         for r in rows],
        ["jobs", "writes/job", "running KiB/job", "reopened", "reopened+pruned",
         "pruned, reopened", "compacted", "pruned, compacted", "job_event rows",
         "store MB (as written / compacted / pruned+compacted)"]))
    if pruned_running:
        g = pruned_running
        print(f"\nwriter at {n_max} jobs: RSS +{(g['rss_before_kib'] - g['base_kib']) / 1024:.1f}"
              f" MiB; pruned {g['jobs_pruned']} timelines in {g['prune_seconds']} s → "
              f"+{(g['rss_after_kib'] - g['base_kib']) / 1024:.1f} MiB, after malloc_trim "
              f"+{(g['rss_after_trim_kib'] - g['base_kib']) / 1024:.1f} MiB")
    print(f"running slope {slope:.2f} KiB/job; per 100,000 jobs: {per_100k}")
    load_end = os.getloadavg()
    print(f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end; "
          f"{time.time() - started:.0f} s")
    path = harness.write_results("stored_jobs_memory", {
        "life": args.life, "checks": args.checks if args.life == "polling" else None,
        "at": args.at, "rows": rows, "curve": curve, "writer_pruned": pruned_running,
        "running_slope_kib_per_job": round(slope, 2), "per_100k_jobs": per_100k,
        "empty_store_open": empty, "writer_base_kib": base,
        "load_start": load_start, "load_end": load_end,
        "seconds": round(time.time() - started)}, args.json)
    print(f"results: {path}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
