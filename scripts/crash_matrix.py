"""The crash and fault matrix (docs/RELIABILITY.md): one video job per run through the real
server (a subprocess on embedded surrealkv), the real fal_client against the fake fal server
over HTTPS, and S3 on moto behind the fault proxy, with

* a crash point: none, or the server killed (os._exit(137)) at a named driver step
  (app.jobs.crashpoints.POINTS), then started again on the same data directory;
* a provider fault: none, submit 5xx ×2, status 5xx ×2, result 5xx ×2, result timeout
  (one result request held 5 s against FAL_TIMEOUT=2), video 404, completes with an error;
* a storage fault: none, S3 503 on the next 2 requests (botocore's own retries absorb them),
  S3 503 on the next 4 (past botocore's 3 attempts: the driver's backoff takes over);
* database write conflicts: none, or 30 % of write transactions refused with SurrealDB's
  retryable conflict (tests/fakes/db_conflicts.py; the embedded engine serializes writes in
  one process and so never reports one itself).

After each run the server is stopped and the books are read from its database: the job must
end completed (charged once, one library item, one stored object) or failed with a clear
message (nothing charged, nothing stored), never lost, with no reservation left behind and
the ledger summing to the balance.

    .venv/bin/python scripts/crash_matrix.py                 # the default subset, 5 runs a cell
    .venv/bin/python scripts/crash_matrix.py --full          # the whole product (~1 h)
    .venv/bin/python scripts/crash_matrix.py --runs 1 --limit 6   # a quick look
    .venv/bin/python scripts/crash_matrix.py --resume        # go on after a stop
    .venv/bin/python scripts/crash_matrix.py --report        # the table of what ran so far

Writes bench-results/crash_matrix.json and prints the table (Markdown)."""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CRASHES = ("none", "before_submit", "after_submit", "while_processing", "after_download",
           "after_upload", "after_charge")
PROVIDER_FAULTS = ("none", "submit_5xx", "status_5xx", "result_5xx", "result_timeout",
                   "video_404", "completes_with_error")
STORAGE_FAULTS = ("none", "s3_503x2", "s3_503x4")
DB_FAULTS = ("none", "conflicts_30pct")
# Faults that end the job before it downloads anything: the later crash points are never
# reached, so those cells are the same as "no crash" and are not run.
ENDS_BEFORE_DOWNLOAD = {"video_404", "completes_with_error"}
AFTER_DOWNLOAD = {"after_download", "after_upload", "after_charge"}
FAL_ERROR = "Image is NSFW, please try another image"
RUN_TIMEOUT = 120.0  # a job not final by then (restarts included) counts as lost
START_TIMEOUT = 120.0  # a loaded machine can take long to import and open the app


@dataclass(frozen=True)
class Cell:
    crash: str
    provider: str
    storage: str
    db: str

    @property
    def reachable(self) -> bool:
        return not (self.provider in ENDS_BEFORE_DOWNLOAD and self.crash in AFTER_DOWNLOAD)


@dataclass
class Run:
    cell: Cell
    status: str = "lost"
    error: str | None = None
    crashed: bool = False
    restarts: int = 0
    charges: int = 0
    video_items: int = 0
    stored_objects: int = 0
    balance: int = 0
    ledger_sum: int = 0
    reserved: int = 0
    active_jobs: int = 0
    submissions: int = 0  # submit requests fal received (refused ones too)
    fal_jobs_created: int = 0  # submissions fal accepted: 2 means the job ran twice at fal
    conflicts_injected: int = 0
    exit_code: int | None = None
    seconds: float = 0.0
    problem: str | None = None  # the harness's own trouble, if any


def cells(full: bool) -> list[Cell]:
    if full:
        out = [Cell(c, p, s, d) for c in CRASHES for p in PROVIDER_FAULTS
               for s in STORAGE_FAULTS for d in DB_FAULTS]
    else:
        # Every crash point × every provider fault; each storage fault and the conflicts
        # against every crash point; and all the faults at once at every crash point.
        out = [Cell(c, p, "none", "none") for c in CRASHES for p in PROVIDER_FAULTS]
        for storage, db in (("s3_503x2", "none"), ("s3_503x4", "none"),
                            ("none", "conflicts_30pct")):
            out += [Cell(c, "none", storage, db) for c in CRASHES]
        out += [Cell(c, "result_5xx", "s3_503x4", "conflicts_30pct") for c in CRASHES]
    return [c for c in dict.fromkeys(out) if c.reachable]


# -- one worker process: its own fake fal server, moto and fault proxy ----------------------

_W: dict = {}


def _init_worker() -> None:
    from tests.fakes.fal_server import FakeFal
    from tests.fakes.s3_faults import shared_fault_proxy

    fake = FakeFal().start()
    _W.update(fake=fake, proxy=shared_fault_proxy())


def run_one(cell: Cell, index: int) -> Run:
    import httpx

    from tests.crashkit import Browserless, ServerProcess, read_books
    from tests.fakes.fal_server import JobSpec
    from tests.helpers import png_bytes

    fake, proxy = _W["fake"], _W["proxy"]
    fake.reset()
    proxy.reset()
    # Still running at the driver's first status check (about 1 s after submitting), so
    # the `while_processing` point is reached; done by the second. With failing status
    # requests the first check that gets an answer comes later (in-step retries): longer.
    run_time = 3.0 if (cell.crash, cell.provider) == ("while_processing", "status_5xx") else 1.2
    spec = JobSpec(queue_time=0.2, run_time=run_time)
    if cell.provider == "video_404":
        spec = JobSpec(queue_time=0.2, run_time=run_time, video_404=True)
    elif cell.provider == "completes_with_error":
        spec = JobSpec(queue_time=0.2, run_time=run_time, error=FAL_ERROR)
    fake.defaults = spec  # every submission of this run (a resubmission too)

    run = Run(cell)
    started = time.monotonic()
    data_dir = Path(tempfile.mkdtemp(prefix="crashmatrix-"))
    env = {**fake.env(), **proxy.env(), "VIDEO_PROVIDER": "fal", "STATUS_INTERVAL": "0.2",
           "FAL_TIMEOUT": "2", "LOG_FORMAT": "json"}
    command = ("-m", "app", "serve")
    if cell.db != "none":
        command = ("-m", "tests.fakes.db_conflicts", "serve")
        env["REELFORGE_DB_CONFLICT_RATE"] = "0.3"
    server = ServerProcess(data_dir, env, command=command)
    email = f"run{index}@example.com"
    prefix = None  # users/{id}: where this run's person's files are
    try:
        server.start(crash_at=None if cell.crash == "none" else cell.crash, timeout=START_TIMEOUT)
        person = Browserless(server.url)
        person.signup(email)
        key = person.upload(png_bytes())
        prefix = key.split("/library/")[0]
        # arm the faults: they hit the job's next requests
        if cell.provider == "submit_5xx":
            fake.fail_next("submit", n=2, status=503)
        elif cell.provider == "status_5xx":
            fake.fail_next("status", n=2, status=503)
        elif cell.provider == "result_5xx":
            fake.fail_next("result", n=2, status=503)
        elif cell.provider == "result_timeout":
            fake.delay_next("result", 5.0, n=1)
        if cell.storage == "s3_503x2":
            proxy.fail_next(2)
        elif cell.storage == "s3_503x4":
            proxy.fail_next(4)
        job_id = None
        with contextlib.suppress(httpx.HTTPError):
            job_id = person.submit(key)
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:  # died at the crash point: start it again
                run.crashed = run.crashed or server.proc.returncode == 137
                run.restarts += 1
                if run.restarts > 3:
                    run.problem = f"server keeps exiting ({server.proc.returncode})"
                    break
                server.start(timeout=START_TIMEOUT)
                continue
            try:
                if job_id is None:  # the crash beat the 202: find the job in the list
                    jobs = person.http.get("/api/jobs").json()["jobs"]
                    job_id = jobs[0]["jobId"] if jobs else None
                    if job_id is None:
                        run.problem = "submission not recorded"
                        break
                body = person.status(job_id)
            except (httpx.HTTPError, ValueError, KeyError):
                time.sleep(0.1)
                continue
            if body["status"] in ("completed", "failed", "canceled"):
                run.status = body["status"]
                run.error = body.get("error")
                break
            time.sleep(0.1)
        run.exit_code = server.stop()
    except Exception as exc:  # the harness's own failure, reported in the cell
        run.problem = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        server.kill()
    try:
        books = read_books(data_dir, email)
        run.charges, run.video_items = books.charges, books.video_items
        run.balance, run.ledger_sum = books.balance, books.ledger_sum
        run.reserved, run.active_jobs = books.reserved, books.active_jobs
        if prefix:
            listed = proxy.upstream.client().list_objects_v2(
                Bucket=proxy.bucket, Prefix=f"{prefix}/library/videos/")
            run.stored_objects = listed.get("KeyCount", 0)
    except Exception as exc:
        run.problem = (run.problem or "") + f" books: {type(exc).__name__}: {exc}"[:300]
    run.submissions = fake.count("submit")
    run.fal_jobs_created = sum(1 for r in list(fake.requests)
                               if r.kind == "submit" and r.status_code == 200)
    run.conflicts_injected = sum(
        p.read_text(errors="replace").count("db_conflicts: injected")
        for p in data_dir.glob("server-*.log"))
    run.seconds = round(time.monotonic() - started, 2)
    shutil.rmtree(data_dir, ignore_errors=True)
    return run


def _run_from(data: dict) -> Run:
    run = Run(**{**data, "cell": Cell(**data["cell"])})
    if "fal_jobs_created" not in data:  # recorded before the field existed
        run.fal_jobs_created = run.submissions - (2 if run.cell.provider == "submit_5xx" else 0)
    return run


def _task(args: tuple[Cell, int]) -> Run:
    return run_one(*args)


# -- the table -----------------------------------------------------------------------------


@dataclass
class Row:
    cell: Cell
    runs: int = 0
    completed: int = 0
    failed_clear: int = 0
    failed_unclear: int = 0
    lost: int = 0
    charged_twice: int = 0
    reservations_left: int = 0
    ledger_mismatch: int = 0
    books_mismatch: int = 0  # charge/library item/stored object not exactly one iff completed
    crashed: int = 0
    resubmitted: int = 0
    conflicts_injected: int = 0
    harness_problems: int = 0
    messages: list[str] = field(default_factory=list)


def clear_message(text: str | None) -> bool:
    return bool(text) and not text.startswith("Internal error") and len(text) >= 10


def summarize(runs: list[Run]) -> list[Row]:
    rows: dict[Cell, Row] = {}
    for r in runs:
        row = rows.setdefault(r.cell, Row(r.cell))
        if r.problem:  # the harness's trouble, not the app's: run again with --resume
            row.harness_problems += 1
            continue
        row.runs += 1
        done = r.status == "completed"
        row.completed += done
        if r.status == "failed":
            if clear_message(r.error):
                row.failed_clear += 1
            else:
                row.failed_unclear += 1
            if r.error and r.error not in row.messages:
                row.messages.append(r.error)
        row.lost += r.status not in ("completed", "failed")
        row.charged_twice += r.charges > 1
        row.reservations_left += r.reserved != 0 or r.active_jobs != 0
        row.ledger_mismatch += r.ledger_sum != r.balance
        expected = 1 if done else 0
        row.books_mismatch += not (r.charges == r.video_items == r.stored_objects == expected
                                   and r.balance == 1000 - 80 * expected)
        row.crashed += r.crashed
        row.resubmitted += r.fal_jobs_created > 1
        row.conflicts_injected += r.conflicts_injected
    return list(rows.values())


HEAD = ("| crash point | provider fault | storage fault | db conflicts | runs | crashed | "
        "completed | failed (clear message) | lost | charged twice | reservations left | "
        "ledger = balance | books exact | run twice at fal |")


def table(rows: list[Row]) -> str:
    lines = [HEAD, "|" + " --- |" * 14]
    for r in rows:
        c = r.cell
        failed = f"{r.failed_clear}" + (f" (+{r.failed_unclear} unclear)" if r.failed_unclear
                                        else "")
        lines.append(
            f"| {c.crash} | {c.provider} | {c.storage} | {c.db} | {r.runs} | {r.crashed} | "
            f"{r.completed} | {failed} | {r.lost} | {r.charged_twice} | "
            f"{r.reservations_left} | {'yes' if not r.ledger_mismatch else 'NO'} | "
            f"{'yes' if not r.books_mismatch else 'NO'} | {r.resubmitted} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per cell (default 5)")
    ap.add_argument("--full", action="store_true", help="every cell of the product")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="only the first N cells")
    ap.add_argument("--only", default=None,
                    help="only cells matching CRASH:PROVIDER:STORAGE:DB (* for any)")
    ap.add_argument("--out", default=str(ROOT / "bench-results" / "crash_matrix.json"))
    ap.add_argument("--resume", action="store_true",
                    help="keep the runs already in OUT's .runs.jsonl and run only the rest")
    ap.add_argument("--report", action="store_true",
                    help="run nothing: the table from the runs recorded so far")
    args = ap.parse_args()

    chosen = cells(args.full)
    if args.only:
        want = args.only.split(":")
        chosen = [c for c in chosen if all(w in ("*", v) for w, v in
                                           zip(want, (c.crash, c.provider, c.storage, c.db),
                                               strict=False))]
    chosen = chosen[: args.limit]
    out = Path(args.out)
    log = out.with_suffix(".runs.jsonl")  # one line per finished run, so a stop loses nothing
    resume = args.resume or args.report
    done: list[Run] = [] if not resume else [
        _run_from(json.loads(line)) for line in log.read_text().splitlines() if line.strip()
    ] if log.exists() else []
    # A run the harness itself could not carry out (the server did not come up in time on a
    # loaded machine, …) is run again; it is listed apart in the JSON, never as "lost".
    retried = [r for r in done if r.problem]
    done = [r for r in done if not r.problem]
    if not resume:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
    elif not args.report:  # rewrite it without the runs that are to be run again
        with out.with_suffix(".retried.jsonl").open("a") as kept:
            kept.writelines(json.dumps({**asdict(r), "cell": asdict(r.cell)}) + "\n"
                            for r in retried)
        log.write_text("".join(json.dumps({**asdict(r), "cell": asdict(r.cell)}) + "\n"
                               for r in done))
    have: dict[Cell, int] = {}
    for r in done:
        have[r.cell] = have.get(r.cell, 0) + 1
    # Round by round (every cell once, then every cell again, …): stopped early, every cell
    # still has about as many runs as any other.
    tasks = [(cell, i * 1000 + n) for n in range(args.runs) for i, cell in enumerate(chosen)
             if n >= have.get(cell, 0)]
    print(f"{len(chosen)} cells × {args.runs} runs: {len(tasks)} to run on {args.workers} "
          f"workers ({len(done)} already done)", flush=True)
    started = time.monotonic()
    runs: list[Run] = [r for r in done if r.cell in set(chosen)]
    if tasks and not args.report:
        ctx = mp.get_context("spawn")
        with ctx.Pool(args.workers, initializer=_init_worker) as pool, log.open("a") as sink:
            for n, run in enumerate(pool.imap_unordered(_task, tasks), 1):
                runs.append(run)
                sink.write(json.dumps({**asdict(run), "cell": asdict(run.cell)}) + "\n")
                sink.flush()
                flag = "" if run.status in ("completed", "failed") and not run.problem else " !!"
                print(f"[{n}/{len(tasks)}] {run.cell.crash}/{run.cell.provider}/"
                      f"{run.cell.storage}/{run.cell.db}: {run.status} in {run.seconds}s"
                      f"{' crashed' if run.crashed else ''}{flag}"
                      f"{' ' + run.problem if run.problem else ''}", flush=True)
    order = {c: i for i, c in enumerate(chosen)}
    rows = sorted(summarize(runs), key=lambda r: order[r.cell])
    per_cell = sorted({r.runs for r in rows})
    totals = {
        "cells": len(rows), "runs": len(runs),
        "completed": sum(r.completed for r in rows),
        "failed_clear": sum(r.failed_clear for r in rows),
        "failed_unclear": sum(r.failed_unclear for r in rows),
        "lost": sum(r.lost for r in rows),
        "charged_twice": sum(r.charged_twice for r in rows),
        "reservations_left": sum(r.reservations_left for r in rows),
        "ledger_mismatch": sum(r.ledger_mismatch for r in rows),
        "books_mismatch": sum(r.books_mismatch for r in rows),
        "crashed": sum(r.crashed for r in rows),
        "run_twice_at_fal": sum(r.resubmitted for r in rows),
        "conflicts_injected": sum(r.conflicts_injected for r in rows),
        "harness_problems": sum(r.harness_problems for r in rows),
        "seconds_this_session": round(time.monotonic() - started, 1),
        "run_seconds_total": round(sum(r.seconds for r in runs), 1),
        "runs_per_cell": per_cell,
    }
    out.write_text(json.dumps({
        "subset": "full" if args.full else "default", "runs_per_cell_asked": args.runs,
        "workers": args.workers, "totals": totals,
        "skipped_unreachable": [asdict(c) for c in
                                ([Cell(a, p, s, d) for a in CRASHES for p in PROVIDER_FAULTS
                                  for s in STORAGE_FAULTS for d in DB_FAULTS]
                                 if args.full else
                                 [Cell(a, p, "none", "none") for a in CRASHES
                                  for p in PROVIDER_FAULTS])
                                if not c.reachable],
        "rows": [{**asdict(r), "cell": asdict(r.cell)} for r in rows],
        "harness_retries": [{**asdict(r), "cell": asdict(r.cell)} for r in retried],
        "runs": [{**asdict(r), "cell": asdict(r.cell)} for r in runs],
    }, indent=1) + "\n")
    print()
    print(table(rows))
    print()
    print(json.dumps(totals))
    bad = (totals["lost"] or totals["charged_twice"] or totals["reservations_left"]
           or totals["ledger_mismatch"] or totals["books_mismatch"] or totals["failed_unclear"])
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    os.environ.pop("DATABASE_URL", None)
    main()
