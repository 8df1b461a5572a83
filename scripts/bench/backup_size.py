"""How big and how long is a backup of 10,000 jobs, and what does it cost the running app?

Builds an embedded surrealkv store with the real schema and N jobs as the app leaves them
(by default 10,000: 85% completed with their charge, library video and media file, 8%
failed, 4% canceled, 3% still active; five timeline entries or so each; 100 people with a
sign-up ledger entry, an uploaded image and a session), then, in this process, through the
app's own BackupService:

1. a first backup (every media file new: hard-linked into the mirror and hashed), while a
   writer changes a balance every 10 ms and a ticker measures the event loop's stalls;
2. a second backup with nothing new (the incremental case);
3. a third after 100 more finished jobs;
4. a restore of the third into an empty data directory (records, media, checks).

    .venv/bin/python scripts/bench/backup_size.py [--jobs 10000] [--media-kib 64] [--quick]

Media files are random bytes (videos do not compress), `--media-kib` each."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import harness

from app.backup.restore import restore
from app.backup.service import BackupService
from app.db import users as users_db
from app.db.connection import Database
from app.db.schema import apply_schema
from app.db.templates import sync_catalogue
from app.settings import Settings

BATCH = 500
PROMPT = (" driving along a coastal road at golden hour, the camera tracking alongside, "
          "reflections on the paint")
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$" + "h" * 43

FILL_USERS = """
FOR $i IN $from..$to {
    LET $u = type::thing('user', 'u' + <string>$i);
    CREATE $u CONTENT { email: 'person' + <string>$i + '@example.com', password_hash: $hash,
                        balance: 100000 };
    CREATE ledger CONTENT { owner: $u, amount: 100000, reason: 'signup' };
    CREATE type::thing('library', 'img' + <string>$i) CONTENT {
        key: 'users/u' + <string>$i + '/library/images/start.png', owner: $u, kind: 'image',
        content_type: 'image/png', size: 48213, name: 'start.png' };
    CREATE type::thing('session', crypto::sha256(<string>$i)) CONTENT {
        data: '{"uid":"u' + <string>$i + '"}', user: $u, user_agent: 'Mozilla/5.0 (X11)',
        expires_at: time::now() + 14d };
};
"""

# One job per $i: its state by $i % 100, its owner by $i % $users.
FILL_JOBS = """
FOR $i IN $from..$to {
    LET $id = 'job' + <string>$i;
    LET $jid = type::thing('video_job', $id);
    LET $n = $i % $users;
    LET $owner = type::thing('user', 'u' + <string>$n);
    LET $p = $i % 100;
    LET $status = IF $p < 85 { 'completed' } ELSE IF $p < 93 { 'failed' }
        ELSE IF $p < 97 { 'canceled' } ELSE IF $p < 98 { 'pending' }
        ELSE IF $p < 99 { 'processing' } ELSE { 'queued' };
    LET $key = 'users/u' + <string>$n + '/library/videos/' + $id + '.mp4';
    CREATE $jid CONTENT {
        owner: $owner, template: 'car-commercial', template_name: 'Car commercial',
        start_key: 'users/u' + <string>$n + '/library/images/start.png',
        variables: { BRAND: 'Aurora', MODEL: 'S' + <string>$i },
        prompt: 'A cinematic commercial of the Aurora S' + <string>$i + $prompt,
        provider: 'fal', endpoint: 'fal-ai/kling-video/v2.1/standard/image-to-video',
        parameters: { duration: '5', cfg_scale: 0.5, negative_prompt: 'blur, distortion' },
        provider_request_id: IF $status = 'pending' { NONE } ELSE { rand::uuid() },
        status: $status, credits: 80, deadline_at: time::now() + 30m, attempts: 1,
        checks: 3, started_at: time::now(),
        finished_at: IF $p < 97 { time::now() } ELSE { NONE },
        error: IF $status = 'failed' { 'The provider could not render this image' } ELSE { NONE },
        result_key: IF $status = 'completed' { $key } ELSE { NONE },
        result_size: IF $status = 'completed' { $size } ELSE { NONE },
        announced: $p < 97
    };
    FOR $to_state IN ['pending', 'queued', 'processing', 'finalizing'] {
        CREATE job_event CONTENT { job: $id, to: $to_state, reason: 'step' };
    };
    IF $p < 97 { CREATE job_event CONTENT { job: $id, to: $status, reason: 'done' }; };
    IF $status = 'completed' {
        CREATE type::thing('ledger', 'capture-' + $id) CONTENT {
            owner: $owner, amount: -80, reason: 'video', job: $id };
        UPDATE $owner SET balance -= 80;
        CREATE type::thing('library', $id) CONTENT {
            key: $key, owner: $owner, kind: 'video', content_type: 'video/mp4', size: $size,
            job: $id };
    } ELSE IF $p >= 97 {
        UPDATE $owner SET reserved += 80, active_jobs += 1;
    };
};
"""


async def fill_jobs(db: Database, first: int, last: int, users: int, size: int) -> None:
    for start in range(first, last, BATCH):
        await db.write(FILL_JOBS, {"from": start, "to": min(start + BATCH, last),  # end excluded
                                   "users": users, "size": size, "prompt": PROMPT})


def write_media(media: Path, first: int, last: int, users: int, size: int) -> int:
    """A file per completed job (as FILL_JOBS decides) and an image per person."""
    count = 0
    for i in range(first, last):
        if i % 100 < 85:
            path = media / f"users/u{i % users}/library/videos/job{i}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(size))
            count += 1
    return count


async def measured_backup(service: BackupService, db: Database, user_ids: list[str]) -> dict:
    """One backup, with a writer (a grant every 10 ms) and an event-loop ticker alongside."""
    done = asyncio.Event()
    latencies: list[float] = []
    stalls: list[float] = []

    async def writer() -> None:
        n = 0
        while not done.is_set():
            started = time.perf_counter()
            await users_db.grant(db, user_ids[n % len(user_ids)], 1, "grant")
            latencies.append((time.perf_counter() - started) * 1000)
            n += 1
            await asyncio.sleep(0.01)

    async def ticker() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            stalls.append((time.perf_counter() - started - 0.005) * 1000)

    tasks = [asyncio.create_task(writer()), asyncio.create_task(ticker())]
    await asyncio.sleep(0.2)
    harness.reset_peak(os.getpid())
    rss_before = harness.rss_kib(os.getpid())
    started = time.perf_counter()
    result = await service.run("bench")
    seconds = time.perf_counter() - started
    peak = harness.hwm_kib(os.getpid())
    done.set()
    await asyncio.gather(*tasks)
    m = result.manifest
    return {
        "seconds": round(seconds, 2), "writes_held_s": m["timings"]["writes_held_s"],
        "archive_bytes": result.size, "records": m["rows"],
        "media_files": m["media"]["files"], "media_new": m["media"]["new_files"],
        "media_new_bytes": m["media"]["new_bytes"],
        "write_ms": harness.summary(latencies), "loop_stall_ms": harness.summary(stalls),
        "peak_rss_growth_mib": round((peak - rss_before) / 1024, 1),
        "name": result.name,
    }


async def main(args: argparse.Namespace) -> None:
    jobs = 1000 if args.quick else args.jobs
    size = args.media_kib * 1024
    root = Path(tempfile.mkdtemp(prefix="reelforge-bench-backup-"))
    settings = Settings(data_dir=root / "data", database_url=None, backup_interval_hours=0,
                        backup_dir=root / "backups", backup_keep=10)
    try:
        db = Database(settings)
        await db.connect()
        try:
            await apply_schema(db)
            await sync_catalogue(db)
            started = time.perf_counter()
            await db.write(FILL_USERS, {"from": 0, "to": args.users, "hash": HASH})
            await fill_jobs(db, 0, jobs, args.users, size)
            files = await asyncio.to_thread(write_media, settings.media_dir, 0, jobs,
                                            args.users, size)
            for n in range(args.users):
                image = settings.media_dir / f"users/u{n}/library/images/start.png"
                image.parent.mkdir(parents=True, exist_ok=True)
                image.write_bytes(harness.png_bytes())
            print(f"filled {jobs:,} jobs, {files + args.users:,} media files in "
                  f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
            service = BackupService(settings, db)
            user_ids = [f"u{n}" for n in range(args.users)]
            first = await measured_backup(service, db, user_ids)
            second = await measured_backup(service, db, user_ids)
            await fill_jobs(db, jobs, jobs + 100, args.users, size)
            await asyncio.to_thread(write_media, settings.media_dir, jobs, jobs + 100,
                                    args.users, size)
            third = await measured_backup(service, db, user_ids)
        finally:
            await db.close()
        target = Settings(data_dir=root / "restored", database_url=None)
        started = time.perf_counter()
        report = await restore(target, str(settings.backups_path / third["name"]))
        restored = {"seconds": round(time.perf_counter() - started, 2),
                    "records": sum(report.written.values()), "media_files": report.media_files,
                    "warnings": report.warnings}
        mirror = sum(p.stat().st_size for p in (settings.backups_path / "media").rglob("*")
                     if p.is_file())
    finally:
        shutil.rmtree(root, ignore_errors=True)

    rows = [(label, r["seconds"], r["writes_held_s"], f"{r['archive_bytes'] / 2**20:.2f}",
             r["records"], f"{r['media_new']}/{r['media_files']}",
             r["write_ms"]["p50"], r["write_ms"]["max"], r["loop_stall_ms"]["max"],
             r["peak_rss_growth_mib"])
            for label, r in (("first (all media new)", first), ("second (nothing new)", second),
                             ("third (+100 jobs)", third))]
    print(f"\nbackup of {jobs:,} jobs, media files of {args.media_kib} KiB "
          f"({harness.cpu_model()}, {os.cpu_count()} cores)")
    print(harness.table(rows, ["backup", "s", "writes held s", "archive MiB", "records",
                               "media new/all", "write p50 ms", "write max ms",
                               "loop stall max ms", "peak RSS +MiB"]))
    print(f"media mirror: {mirror / 2**20:.0f} MiB (hard links to the media files)")
    print(f"restore of the third into an empty data directory: {restored['seconds']} s, "
          f"{restored['records']:,} records, {restored['media_files']:,} media files")
    targets = [
        harness.target("backup of the jobs, first", first["seconds"], 60, unit=" s"),
        harness.target("writes held", first["writes_held_s"], 5.0, unit=" s",
                       note="a submission during the backup waits at most this long"),
        harness.target("incremental backup", second["seconds"], 15, unit=" s"),
        harness.target("archive", round(first["archive_bytes"] / 2**20, 2), 50, unit=" MiB"),
    ]
    print(harness.targets_table(targets))
    path = harness.write_results("backup_size", {
        "jobs": jobs, "media_kib": args.media_kib, "first": first, "second": second,
        "third": third, "restore": restored, "mirror_bytes": mirror, "targets": targets})
    print(f"results: {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--media-kib", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="1,000 jobs")
    asyncio.run(main(parser.parse_args()))
