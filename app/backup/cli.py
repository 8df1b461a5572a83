"""`python -m app backup` and `python -m app restore FILE [--force] [--check]`.

`backup` works while the app runs. The embedded store can be opened by one process only, so
while `serve` holds it the command asks that server (POST /admin/backups/run on 127.0.0.1
with BACKUP_TOKEN) to make the backup; with no server running it opens the store and makes
the backup itself; against a SurrealDB server (ws://) it connects to the database directly,
like any other app process (the lease keeps it to one backup at a time)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import httpx

from app.backup.archive import BackupInvalid
from app.db.connection import Database, DatabaseLocked
from app.settings import Settings, get_settings

COMMANDS = ("backup", "restore")
HTTP_TIMEOUT = 600.0  # a backup of a large database takes a while; the server does the work


def add_parsers(sub: Any) -> None:
    backup = sub.add_parser(
        "backup", help="back up the database and media now (while the app runs, too)")
    backup.add_argument("--url", help="the running server to ask (default: "
                                      "http://127.0.0.1:PORT)")
    restore = sub.add_parser(
        "restore", help="restore a backup into an empty data directory (app stopped)")
    restore.add_argument("file", metavar="FILE",
                         help="a backup file, or s3:NAME for one under BACKUP_S3_PREFIX")
    restore.add_argument("--force", action="store_true",
                         help="restore over existing data (moved aside, not deleted)")
    restore.add_argument("--check", action="store_true",
                         help="only check: restore into a throwaway in-memory database")


def run_command(args: argparse.Namespace) -> str:
    settings = get_settings()
    if args.command == "backup":
        return _backup(settings, args.url)
    return _restore(settings, args)


def _backup(settings: Settings, url: str | None) -> str:
    if settings.db_url.startswith(("mem:", "memory")):
        raise SystemExit("error: DATABASE_URL is mem://: a command has its own empty "
                         "in-memory database; use Back up now on /admin/backups instead")
    if url:
        return _ask_server(settings, url)
    try:
        return asyncio.run(_direct(settings))
    except DatabaseLocked:  # a running `serve` holds the embedded store: ask it
        return _ask_server(settings, f"http://127.0.0.1:{settings.port}")


async def _direct(settings: Settings) -> str:
    from app.backup.service import BackupBusy, BackupService
    from app.db.schema import apply_schema

    db = Database(settings)
    await db.connect()
    service = BackupService(settings, db)
    try:
        await apply_schema(db)
        return (await service.run("cli")).text()
    except BackupBusy as exc:
        raise SystemExit(f"error: {exc}") from None
    finally:
        service.close()
        await db.close()


def _ask_server(settings: Settings, url: str) -> str:
    if not settings.backup_token:
        raise SystemExit(
            "error: the database is open in a running server. Set BACKUP_TOKEN (the same "
            "value in the server's environment and here) to have this command ask it, or "
            "use Back up now on /admin/backups.")
    try:
        r = httpx.post(url.rstrip("/") + "/admin/backups/run", timeout=HTTP_TIMEOUT,
                       headers={"authorization": f"Bearer {settings.backup_token}"})
    except httpx.HTTPError as exc:
        raise SystemExit(f"error: no server answered at {url} ({exc})") from None
    if r.status_code == 200:
        return r.json()["text"]
    if r.status_code == 409:
        raise SystemExit(f"error: {r.json().get('message')}")
    if r.status_code == 404:
        raise SystemExit(f"error: the server at {url} refused: it has another BACKUP_TOKEN "
                         "(or none), or this is not the machine it runs on")
    raise SystemExit(f"error: the server at {url} answered {r.status_code}: {r.text[:300]}")


def _restore(settings: Settings, args: argparse.Namespace) -> str:
    from app.backup.restore import RestoreRefused, restore

    try:
        report = asyncio.run(restore(settings, args.file, force=args.force, check=args.check))
    except BackupInvalid as exc:
        raise SystemExit(f"error: {exc}\nThe backup was refused; nothing was written.") \
            from None
    except RestoreRefused as exc:
        raise SystemExit(f"error: {exc}") from None
    return report.text()
