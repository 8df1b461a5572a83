"""Making a backup: under a lease in the database (one backup at a time, whichever process
or command asks), one consistent read of every table, the media new since the last backup,
the archive written whole and sent to each destination, then retention. The schedule is a
loop in each app process that asks the database whether a backup is due and takes the
lease if so: with several processes against one server, one of them makes it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.backup import archive, snapshot
from app.backup import media as media_files
from app.backup.destinations import Destination, LocalDestination, destinations
from app.db import backups as backups_db
from app.db.connection import Database
from app.db.schema import SCHEMA_VERSION, schema_digest
from app.observability.logging import get_logger
from app.settings import Settings

log = get_logger("reelforge.backup")
LEASE_SECONDS = 600.0  # renewed every third of it while a backup runs
CHECK_SECONDS = 60.0  # how often each process asks whether a scheduled backup is due
FIRST_CHECK_SECONDS = 15.0  # after start, so that a start-up is not slowed by a backup


class BackupBusy(Exception):
    """Another backup holds the lease (in this process or another)."""


@dataclass
class BackupResult:
    name: str
    manifest: dict[str, Any]
    size: int
    locations: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        m = self.manifest
        return {"name": self.name, "bytes": self.size, "locations": self.locations,
                "createdAt": m["created_at"], "tables": m["tables"], "rows": m["rows"],
                "media": m["media"], "seconds": m["timings"]["total_s"],
                "writesHeldSeconds": m["timings"]["writes_held_s"]}

    def text(self) -> str:
        m = self.manifest
        media = m["media"]
        lines = [f"backup {self.name}: {self.size:,} bytes, {m['rows']:,} records in "
                 f"{sum(1 for n in m['tables'].values() if n)} tables, "
                 f"in {m['timings']['total_s']:.2f} s "
                 f"(writes held {m['timings']['writes_held_s']:.2f} s)"]
        if media["storage"] == "local":
            lines.append(f"media: {media['files']:,} files ({media['bytes']:,} bytes), "
                         f"{media['new_files']:,} new ({media['new_bytes']:,} bytes)")
            if media["missing"]:
                lines.append(f"warning: {media['missing']} library items had no file: "
                             + ", ".join(media["missing_keys"]))
        else:
            lines.append("media: in the S3 bucket (keep bucket versioning on)")
        lines += [f"written to {where}" for where in self.locations]
        return "\n".join(lines)


def schema_sha256() -> str:
    """The manifest's: the schema file alone, whichever engine (app/db/schema.py hashes)."""
    return schema_digest(embedded=True)


def app_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reelforge")
    except PackageNotFoundError:
        return "unknown"


class BackupService:
    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._destinations: list[Destination] | None = None

    @property
    def scheduled(self) -> bool:
        """mem:// is for throwaway runs: no schedule (a backup on demand still works)."""
        return self.settings.backup_interval_hours > 0 and not self.db.url.startswith("mem")

    def destinations(self) -> list[Destination]:
        if self._destinations is None:
            self._destinations = destinations(self.settings)
        return self._destinations

    def close(self) -> None:
        for dest in self._destinations or []:
            if hasattr(dest, "storage"):
                dest.storage.close()

    # -- running ---------------------------------------------------------------------------

    async def run(self, trigger: str) -> BackupResult:
        """A backup now; BackupBusy when one is running anywhere."""
        if await backups_db.acquire(self.db, self.owner, LEASE_SECONDS) is None:
            raise BackupBusy("A backup is already running; try again in a minute.")
        return await self._leased(trigger)

    async def run_if_due(self) -> BackupResult | None:
        """The scheduled backup, if the last one is older than BACKUP_INTERVAL_HOURS and no
        other process has just taken it."""
        due = self.settings.backup_interval_hours * 3600
        if await backups_db.acquire(self.db, self.owner, LEASE_SECONDS, due) is None:
            return None
        return await self._leased("scheduled")

    async def schedule(self) -> None:
        await asyncio.sleep(FIRST_CHECK_SECONDS)
        while True:
            try:
                await self.run_if_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("backup.scheduled_failed")
            await asyncio.sleep(CHECK_SECONDS)

    async def _leased(self, trigger: str) -> BackupResult:
        renewing = asyncio.create_task(self._renew(), name="backup-lease")
        try:
            result = await self._make(trigger)
        except BaseException as exc:
            log.error("backup.failed", trigger=trigger, error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(Exception):
                await asyncio.shield(backups_db.finish(
                    self.db, self.owner, error=f"{type(exc).__name__}: {exc}"[:500]))
            raise
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        await backups_db.finish(self.db, self.owner, name=result.name,
                                at=datetime.fromisoformat(result.manifest["created_at"]))
        return result

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            with contextlib.suppress(Exception):
                await backups_db.renew(self.db, self.owner, LEASE_SECONDS)

    async def _make(self, trigger: str) -> BackupResult:
        started = time.monotonic()
        at = datetime.now(UTC)
        name = archive.new_name(at)
        dests = self.destinations()
        local = next((d for d in dests if isinstance(d, LocalDestination)), None)
        # The work directory is beside the local backups (one file system: the archive is
        # linked into place) or, with S3 only, under DATA_DIR.
        work = (local.root / f".partial-{name}" if local
                else self.settings.data_dir / "tmp" / f"backup-{name}")
        await asyncio.to_thread(_clear_leftovers, work)
        await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
        try:
            snap, database = await _read_database(self.db, work / archive.DATABASE)
            held, tables = snap.held, snap.tables
            media, entries = await self._media(dests, work, snap.library_keys)
            listing = await asyncio.to_thread(archive.write_media, work / archive.MEDIA, entries)
            manifest = {
                "format": archive.FORMAT, "format_version": archive.FORMAT_VERSION,
                "name": name, "created_at": at.isoformat(), "trigger": trigger,
                "app_version": app_version(), "schema_version": SCHEMA_VERSION,
                "schema_sha256": await asyncio.to_thread(schema_sha256),
                "source": {"engine": "embedded" if self.db.embedded else "server",
                           "namespace": self.settings.surrealdb_ns,
                           "database": self.settings.surrealdb_db},
                "tables": tables, "rows": sum(tables.values()),
                "members": {archive.MEDIA: listing, archive.DATABASE: database},
                "media": media,
                "timings": {"writes_held_s": round(held, 3),
                            "total_s": round(time.monotonic() - started, 3)},
            }
            tar = work / name
            size = await asyncio.to_thread(archive.write_archive, tar, manifest, {
                archive.MEDIA: work / archive.MEDIA, archive.DATABASE: work / archive.DATABASE})
            locations = [await dest.put_archive(tar, name) for dest in dests]
        finally:
            await asyncio.to_thread(shutil.rmtree, work, ignore_errors=True)
        await self._prune(dests)
        result = BackupResult(name, manifest, size, locations)
        log.info("backup.finished", name=name, trigger=trigger, bytes=size,
                 rows=manifest["rows"], media_files=media.get("files", 0),
                 media_new=media.get("new_files", 0), writes_held_s=round(held, 3),
                 duration_s=round(time.monotonic() - started, 3), locations=locations)
        return result

    async def _media(self, dests: list[Destination], work: Path, library_keys: list[str]
                     ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if (self.settings.storage or "").strip().lower() != "local":
            return {"storage": self.settings.storage, "files": 0, "bytes": 0}, []
        previous = await self._previous_listing(dests[0])
        known = [await dest.media_hashes() for dest in dests]
        found = await asyncio.to_thread(lambda: list(media_files.scan(self.settings.media_dir)))
        entries: list[dict[str, Any]] = []
        new_files = new_bytes = 0
        for f in found:
            prev = previous.get(f.key)
            if (prev and prev.get("size") == f.size and prev.get("mtime_ns") == f.mtime_ns
                    and all(prev.get("sha256") in k for k in known)):
                entries.append(prev)
                continue
            staged = await asyncio.to_thread(media_files.stage, f, work / "incoming")
            if staged is None:  # deleted since the scan
                continue
            path, sha, size = staged
            added = False
            for dest, k in zip(dests, known, strict=True):
                if sha not in k:
                    await dest.put_media(sha, path)
                    k.add(sha)
                    added = True
            new_files += added
            new_bytes += size if added else 0
            entries.append(media_files.entry(f.key, size, sha, f.mtime_ns))
            await asyncio.to_thread(path.unlink)
        # A library item deleted between the database read and the media scan has its record
        # in the backup but no file: say so (its owner deleted it).
        missing = sorted(set(library_keys) - {e["key"] for e in entries})
        return {"storage": "local", "files": len(entries),
                "bytes": sum(e["size"] for e in entries), "new_files": new_files,
                "new_bytes": new_bytes, "missing": len(missing),
                "missing_keys": missing[:20]}, entries

    async def _previous_listing(self, dest: Destination) -> dict[str, dict[str, Any]]:
        for name in (await dest.names())[:1]:
            try:
                _manifest, entries = await archive.read_index(dest.reader(name), name)
            except (archive.BackupInvalid, OSError) as exc:
                log.warning("backup.previous_unreadable", name=name, error=str(exc))
                return {}
            return {e["key"]: e for e in entries or []}
        return {}

    async def _prune(self, dests: list[Destination]) -> None:
        """Keep the newest BACKUP_KEEP archives in each place, and the media they list."""
        keep = self.settings.backup_keep
        for dest in dests:
            names = await dest.names()
            for name in names[keep:]:
                await dest.delete(name)
                log.info("backup.pruned", name=name, where=dest.label)
            referenced: set[str] = set()
            try:
                for name in names[:keep]:
                    _manifest, entries = await archive.read_index(dest.reader(name), name)
                    referenced |= {e["sha256"] for e in entries or []}
            except (archive.BackupInvalid, OSError) as exc:
                # Unsure what a kept backup needs: keep every media file.
                log.warning("backup.media_not_pruned", where=dest.label, error=str(exc))
                continue
            for sha in await dest.media_hashes() - referenced:
                await dest.delete_media(sha)

    # -- reading ---------------------------------------------------------------------------

    async def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest backups in the first destination, with their manifests."""
        dest = self.destinations()[0]
        found = []
        for name in (await dest.names())[:limit]:
            try:
                manifest, _ = await archive.read_index(dest.reader(name), name, media=False)
                error = None
            except (archive.BackupInvalid, OSError) as exc:
                manifest, error = {}, str(exc)
            found.append({"name": name, "bytes": await dest.size(name), "manifest": manifest,
                          "error": error, "location": dest.location(name)})
        return found

    async def state(self) -> dict[str, Any]:
        return await backups_db.state(self.db) or {}


async def _read_database(db: Database, path: Path
                         ) -> tuple[snapshot.Snapshot, dict[str, Any]]:
    """The snapshot, written into the database member as it is read: one page compresses
    in a thread while the next is read, so memory holds about two pages, not the store."""
    member = await asyncio.to_thread(archive.LinesMember, path)
    writing: asyncio.Future[None] | None = None

    async def page(table: str, literals: list[str]) -> None:
        nonlocal writing
        if writing is not None:
            await writing
        writing = asyncio.ensure_future(asyncio.to_thread(
            member.write, archive.record_lines(table, literals)))

    try:
        snap = await snapshot.read(db, page)
        if writing is not None:
            await writing
    except BaseException:
        if writing is not None:  # a thread cannot be stopped: let it finish first
            await asyncio.gather(writing, return_exceptions=True)
        await asyncio.to_thread(member.discard)
        raise
    return snap, await asyncio.to_thread(member.close)


def _clear_leftovers(work: Path) -> None:
    """Work directories of backups that died half-way (this one holds the lease, so no
    other backup is running)."""
    if work.parent.is_dir():
        prefix = work.name.split("reelforge-")[0]
        for old in work.parent.glob(f"{prefix}reelforge-*"):
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)


@asynccontextmanager
async def scheduled_backups(app: Any) -> AsyncIterator[None]:
    """Lifespan part (after the one that opens the services): the backup service, and its
    schedule unless BACKUP_INTERVAL_HOURS=0."""
    services = app.state.services
    backups = BackupService(services.settings, services.db)
    backups.destinations()  # a wrong setting (BACKUP_S3_PREFIX without S3_BUCKET) stops the start
    app.state.backups = backups
    task = asyncio.create_task(backups.schedule(), name="backups") if backups.scheduled else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        backups.close()
