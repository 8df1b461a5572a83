"""A backup of a large embedded store: how long, how long writes wait, how much memory.

Builds (or copies, `--store DIR` of an earlier `--keep`) a surrealkv store with the real
schema and N jobs as backup_size.py makes them (its FILL_JOBS: about 7.7 records a job,
five timeline rows each; no media files), opens it, and makes one backup through the app's
own BackupService while a writer grants credits every 10 ms and a ticker measures how late
the event loop wakes (backup_size.py's `measured_backup`).

    .venv/bin/python scripts/bench/backup_large.py --jobs 50000 --keep /tmp/store50k
    .venv/bin/python scripts/bench/backup_large.py --store /tmp/store50k

To measure another checkout's code on the same store, copy this file into its scripts/bench/
and run it there (harness.py puts the checkout it sits in first on sys.path)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import harness
from backup_size import FILL_USERS, HASH, fill_jobs, measured_backup

from app.backup.service import BackupService
from app.db.connection import Database
from app.db.schema import apply_schema
from app.db.templates import sync_catalogue
from app.settings import Settings

USERS = 100


async def build(data: Path, jobs: int) -> None:
    db = Database(Settings(data_dir=data, database_url=None, backup_interval_hours=0))
    await db.connect()
    try:
        await apply_schema(db)
        await sync_catalogue(db)
        await db.write(FILL_USERS, {"from": 0, "to": USERS, "hash": HASH})
        for start in range(0, jobs, 5000):
            await fill_jobs(db, start, min(start + 5000, jobs), USERS, 65536)
    finally:
        await db.close()


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="reelforge-bench-backup-large-"))
    data = root / "data"
    try:
        if args.store:
            shutil.copytree(args.store, data)
        else:
            started = time.perf_counter()
            await build(data, args.jobs)
            print(f"built {args.jobs:,} jobs in {time.perf_counter() - started:.1f} s")
            if args.keep:
                shutil.copytree(data, args.keep)
        size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
        settings = Settings(data_dir=data, database_url=None, backup_interval_hours=0,
                            backup_dir=root / "backups")
        db = Database(settings)
        started = time.perf_counter()
        await db.connect()
        opened = time.perf_counter() - started
        rss_open = harness.rss_kib(os.getpid())
        try:
            result = await measured_backup(BackupService(settings, db), db,
                                           [f"u{n}" for n in range(USERS)])
        finally:
            await db.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result.pop("name")
    print(json.dumps({"store_mb": round(size / 1e6), "open_s": round(opened, 1),
                      "rss_opened_mib": round(rss_open / 1024),
                      **result}, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--store", help="copy this data directory instead of building one")
    parser.add_argument("--keep", help="keep a copy of the built data directory here")
    asyncio.run(main(parser.parse_args()))
