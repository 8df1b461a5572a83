"""The offline restore: `python -m app restore FILE [--force] [--check]`.

Nothing is written until the whole file has been read and checked: the members against the
manifest's sizes and SHA-256, every record decoded and counted, the schema version, and
every media file it lists found in the mirror. Then:

- embedded (surrealkv): the records go into a new store beside the real one
  (`db.restoring`) and the media into `media.restoring`; their counts and the books are
  checked; only then are the two renamed into place, under the data directory's lock. A
  failure before that leaves the data directory as it was. With --force, what was there is
  moved aside (`db.before-restore-…`), not deleted.
- server (ws://): the records go straight into the configured namespace and database
  (empty, or emptied with --force); a failure part-way says so.

Leases of jobs are cleared: the processes that held them are gone, so the first driver to
start takes the jobs at once (a local render is then found lost and rendered again; a fal
job is asked about by its request id)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from app.backup import archive, snapshot
from app.backup import media as media_files
from app.backup.destinations import LocalDestination, S3Destination, s3_storage
from app.backup.service import schema_sha256
from app.db.connection import Database
from app.db.records import User, decode_all, plain
from app.db.schema import (
    SCHEMA_VERSION,
    STATE_TABLE,
    apply_schema,
    forget_applied,
    record_applied,
)
from app.jobs.states import ACTIVE
from app.settings import Settings
from app.storage.keys import validate_key

# Rows in these tables do not make a database "in use": the catalogue is loaded at every
# start, and backup_state is this database's own bookkeeping.
NOT_DATA = frozenset({"template", "backup_state", STATE_TABLE})


class RestoreRefused(Exception):
    """The restore would overwrite data, or cannot run here (the message says why)."""


@dataclass
class Report:
    manifest: dict[str, Any]
    target: str
    written: dict[str, int] = field(default_factory=dict)
    media_files: int = 0
    media_bytes: int = 0
    media_into: str = ""
    leases_cleared: int = 0
    checks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    moved_aside: list[str] = field(default_factory=list)
    dry_run: bool = False

    def text(self) -> str:
        m = self.manifest
        verb = "checked (restored into a throwaway in-memory database)" if self.dry_run \
            else f"restored into {self.target}"
        lines = [f"{m['name']}: made {m['created_at']} ({m['trigger']}), schema "
                 f"{m['schema_version']}, {m['rows']:,} records; checksums ok", f"{verb}:"]
        width = max((len(t) for t in self.written), default=5)
        lines += [f"  {t:<{width}}  {n:>8,}" for t, n in sorted(self.written.items())]
        lines.append(f"  {'total':<{width}}  {sum(self.written.values()):>8,} records")
        if self.media_files or m["media"].get("storage") == "local":
            lines.append(f"media: {self.media_files:,} files ({self.media_bytes:,} bytes)"
                         + (f" into {self.media_into}" if self.media_into else ""))
        else:
            lines.append("media: none in the backup (STORAGE=s3: the bucket holds them)")
        lines += [f"check: {c}" for c in self.checks]
        if self.leases_cleared:
            lines.append(f"leases cleared on {self.leases_cleared} active job"
                         f"{'s' if self.leases_cleared != 1 else ''}: the next start resumes "
                         "them")
        lines += [f"moved aside: {p}" for p in self.moved_aside]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


@contextlib.asynccontextmanager
async def _local_copy(settings: Settings, source: str) -> AsyncIterator[tuple[Path, Any]]:
    """The archive as a local file, and where its media files come from."""
    if source.startswith("s3:"):
        name = source.removeprefix("s3:").rsplit("/", 1)[-1]
        if not archive.NAME.fullmatch(name):
            raise RestoreRefused(f"{name!r} is not the name of a backup")
        dest = S3Destination(s3_storage(settings), settings.backup_s3_prefix or "")
        try:
            with tempfile.TemporaryDirectory(prefix="reelforge-restore-") as tmp:
                path = Path(tmp) / name
                try:
                    await dest.fetch(name, path)
                except FileNotFoundError:
                    raise RestoreRefused(f"no backup {dest.location(name)}") from None
                yield path, dest
        finally:
            dest.storage.close()
        return
    path = Path(source)
    if not path.is_file():
        raise RestoreRefused(f"no backup file at {path}")
    yield path, LocalDestination(path.resolve().parent)


async def restore(settings: Settings, source: str, *, force: bool = False,
                  check: bool = False) -> Report:
    async with _local_copy(settings, source) as (path, origin):
        manifest, entries = await asyncio.to_thread(archive.verify, path)
        warnings = _schema_warnings(manifest)
        await _media_present(origin, entries)
        url = settings.db_url
        if check:
            return await _dry_run(settings, path, manifest, entries, origin, warnings)
        if url.startswith(("mem:", "memory")):
            raise RestoreRefused("DATABASE_URL is mem://: there is nothing to restore into "
                                 "that outlives this command")
        if settings.is_embedded:
            report = await _embedded(settings, path, manifest, entries, origin, force)
        else:
            report = await _server(settings, path, manifest, entries, origin, force)
        report.warnings[:0] = warnings
        return report


def _schema_warnings(manifest: dict[str, Any]) -> list[str]:
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise RestoreRefused(
            f"{manifest['name']} holds data of schema version {manifest.get('schema_version')}"
            f"; this release is at version {SCHEMA_VERSION}. Restore it with the release that "
            "made it (app "
            f"{manifest.get('app_version')}), start that once, then upgrade.")
    if manifest.get("schema_sha256") != schema_sha256():
        return ["scripts/schema.surql has changed since this backup (same schema version): "
                "the current schema was applied and every record fitted it"]
    return []


async def _media_present(origin: Any, entries: list[dict[str, Any]]) -> None:
    """Every media file the backup lists is in the mirror, at its size (before anything is
    written; the content is checked against its SHA-256 as it is copied)."""
    if not entries:
        return
    if isinstance(origin, LocalDestination):
        def missing() -> list[str]:
            bad = []
            for e in entries:
                src = origin.media_source(e["sha256"])
                if not src.is_file() or src.stat().st_size != e["size"]:
                    bad.append(e["key"])
            return bad
        absent = await asyncio.to_thread(missing)
    else:
        have = await origin.media_hashes()
        absent = [e["key"] for e in entries if e["sha256"] not in have]
    if absent:
        raise archive.BackupInvalid(
            f"{len(absent)} media files of this backup are missing from {origin.label}/media "
            f"(e.g. {absent[0]}): copy the media/ directory along with the backup file")


async def _nonempty(db: Database) -> list[str]:
    names = [t for t in await snapshot.tables(db) if t not in NOT_DATA]
    if not names:
        return []
    rows = await db.read("".join(f"SELECT VALUE id FROM type::table($t{i}) LIMIT 1;"  # noqa: S608
                                 for i in range(len(names))),
                         {f"t{i}": t for i, t in enumerate(names)})
    return [t for t, r in zip(names, rows, strict=True) if r]


async def _load(db: Database, path: Path, manifest: dict[str, Any], report: Report) -> None:
    """Schema, records (events off meanwhile), leases, and the checks."""
    await apply_schema(db)
    await forget_applied(db)  # the events go for a while: a start meanwhile re-applies
    found = await snapshot.without_events(db)
    report.written = await snapshot.write(db, archive.iter_rows(path))
    report.leases_cleared = await snapshot.clear_leases(db)
    await snapshot.restore_events(db, found)
    await record_applied(db)
    await _check(db, manifest, report)


async def _check(db: Database, manifest: dict[str, Any], report: Report) -> None:
    counts = await snapshot.counts(db)
    wrong = {t: (counts.get(t, 0), n) for t, n in manifest["tables"].items()
             if counts.get(t, 0) != n}
    if wrong:
        raise RestoreRefused("the restored database does not hold what the backup lists "
                             f"(table: found, listed): {wrong}")
    report.checks.append(f"every table holds the records the manifest lists "
                         f"({sum(counts.values()):,})")
    if "user" not in counts:
        return
    users, ledger, active = await db.read(
        "SELECT id, email, balance, reserved, active_jobs FROM user;"
        "SELECT owner, math::sum(amount) AS total FROM ledger GROUP BY owner;"
        # a batch's rows hold credits but are not counted in active_jobs (app/db/jobs.py)
        "SELECT owner, math::sum(credits) AS held, count(batch = NONE) AS n FROM video_job "
        "WHERE status IN $active GROUP BY owner;", {"active": sorted(ACTIVE)})
    sums = {r["owner"]: r["total"] for r in plain(ledger or [])}
    held = {r["owner"]: (r["held"], r["n"]) for r in plain(active or [])}
    off_books, off_holds = [], []
    people = decode_all(users, User)
    for u in people:
        if sums.get(u.id, 0) != u.balance:
            off_books.append(f"{u.email} (balance {u.balance}, ledger {sums.get(u.id, 0)})")
        if held.get(u.id, (0, 0)) != (u.reserved, u.active_jobs):
            off_holds.append(u.email)
    if off_books:
        report.warnings.append("balances that differ from their ledger: " + ", ".join(off_books))
    else:
        report.checks.append("every balance equals the sum of its ledger "
                             f"({len(people):,} account{'s' if len(people) != 1 else ''})")
    if off_holds:
        report.warnings.append("credits held that differ from the active jobs: "
                               + ", ".join(off_holds))
    else:
        report.checks.append("credits held match the active jobs "
                             f"({sum(n for _h, n in held.values()):,} active)")


async def _copy_media(entries: list[dict[str, Any]], origin: Any, root: Path) -> int:
    """Copy each listed file from the mirror to `root/key`, checking its SHA-256."""
    total = 0
    for e in entries:
        dest = root / validate_key(e["key"])
        await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
        if isinstance(origin, LocalDestination):
            await asyncio.to_thread(shutil.copyfile, origin.media_source(e["sha256"]), dest)
        else:
            await origin.fetch_media(e["sha256"], dest)
        if await asyncio.to_thread(media_files.sha256_file, dest) != e["sha256"]:
            raise archive.BackupInvalid(f"the media file for {e['key']} in the mirror is "
                                        "damaged (its SHA-256 differs)")
        total += e["size"]
    return total


async def _dry_run(settings: Settings, path: Path, manifest: dict[str, Any],
                   entries: list[dict[str, Any]], origin: Any, warnings: list[str]) -> Report:
    report = Report(manifest, "mem://", dry_run=True, warnings=list(warnings))
    db = Database(settings.model_copy(update={"database_url": "mem://"}))
    await db.connect()
    try:
        await _load(db, path, manifest, report)
    finally:
        await db.close()
    if entries:
        with tempfile.TemporaryDirectory(prefix="reelforge-check-") as tmp:
            report.media_bytes = await _copy_media(entries, origin, Path(tmp))
        report.media_files = len(entries)
    return report


def _store_path(url: str) -> Path:
    for scheme in ("surrealkv://", "file://"):
        if url.startswith(scheme):
            return Path(url.removeprefix(scheme))
    raise RestoreRefused(f"restoring into {url.split('://')[0]}:// is not supported")


def _has_files(root: Path) -> bool:
    return any(True for _ in media_files.scan(root)) if root.is_dir() else False


async def _embedded(settings: Settings, path: Path, manifest: dict[str, Any],
                    entries: list[dict[str, Any]], origin: Any, force: bool) -> Report:
    store = _store_path(settings.db_url)
    staged_db = store.with_name(store.name + ".restoring")
    media_dir = settings.media_dir.resolve()
    staged_media = media_dir.with_name(media_dir.name + ".restoring")
    in_use: list[str] = []
    if store.exists():
        existing = Database(settings)
        await existing.connect()  # DatabaseLocked while `serve` runs
        try:
            in_use = await _nonempty(existing)
        finally:
            await existing.close()
    media_in_use = await asyncio.to_thread(_has_files, media_dir)
    if (in_use or media_in_use) and not force:
        raise RestoreRefused(_occupied(str(store), in_use, media_dir, media_in_use))
    report = Report(manifest, str(store))
    for leftover in (staged_db, staged_media):  # of an interrupted restore
        await asyncio.to_thread(shutil.rmtree, leftover, ignore_errors=True)
    try:
        db = Database(settings.model_copy(update={"database_url": f"surrealkv://{staged_db}"}))
        await db.connect()
        try:
            await _load(db, path, manifest, report)
        finally:
            await db.close()
        if entries and _local_storage(settings):
            report.media_bytes = await _copy_media(entries, origin, staged_media)
        report.media_files = len(entries)
        local_media = bool(entries) and _local_storage(settings)
        report.moved_aside = await asyncio.to_thread(
            _swap, store, staged_db, media_dir, staged_media if local_media else None,
            bool(in_use), media_in_use)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, staged_db, ignore_errors=True)
        await asyncio.to_thread(shutil.rmtree, staged_media, ignore_errors=True)
        raise
    finally:
        await asyncio.to_thread(Path(f"{staged_db}.lock").unlink, missing_ok=True)
    if entries and not _local_storage(settings):
        report.media_bytes = await _upload_media(settings, entries, origin)
    report.media_into = str(media_dir) if _local_storage(settings) else "the S3 bucket"
    return report


def _local_storage(settings: Settings) -> bool:
    return (settings.storage or "").strip().lower() == "local"


def _occupied(where: str, tables: list[str], media_dir: Path, media: bool) -> str:
    parts = []
    if tables:
        parts.append(f"the database at {where} holds data ({', '.join(tables)})")
    if media:
        parts.append(f"{media_dir} holds media files")
    return ("; ".join(parts) + ". A restore goes into an empty data directory: point DATA_DIR "
            "(or DATABASE_URL) at a new one, or pass --force to move what is there aside "
            "(nothing is deleted).")


def _swap(store: Path, staged_db: Path, media_dir: Path, staged_media: Path | None,
          db_in_use: bool, media_in_use: bool) -> list[str]:
    """Put the restored store (and media) in place, under the data directory's lock so that
    no `serve` opens it half-way. What was there is moved aside if it held anything."""
    lock = FileLock(f"{store}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RestoreRefused(f"the database at {store} was opened by another process (a "
                             "`serve` started?) during the restore; nothing was changed") \
            from None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    moved = []
    try:
        pairs = [(store, staged_db, db_in_use)]
        if staged_media is not None:
            pairs.append((media_dir, staged_media, media_in_use))
        for live, staged, keep in pairs:
            if live.exists():
                if keep:
                    aside = live.with_name(f"{live.name}.before-restore-{stamp}")
                    live.rename(aside)
                    moved.append(str(aside))
                else:
                    shutil.rmtree(live)
            staged.rename(live)
    finally:
        lock.release()
    return moved


async def _upload_media(settings: Settings, entries: list[dict[str, Any]], origin: Any) -> int:
    """STORAGE=s3 now, local media in the backup: the files go into the bucket."""
    from app.storage.factory import make_storage

    storage = make_storage(settings)
    total = 0
    with tempfile.TemporaryDirectory(prefix="reelforge-media-") as tmp:
        for e in entries:
            staged = Path(tmp) / e["sha256"]
            total += await _copy_media([{**e, "key": e["sha256"]}], origin, Path(tmp))
            await storage.put_file(e["key"], staged, "application/octet-stream")
            staged.unlink()
    return total


async def _server(settings: Settings, path: Path, manifest: dict[str, Any],
                  entries: list[dict[str, Any]], origin: Any, force: bool) -> Report:
    db = Database(settings)
    await db.connect()
    where = f"{settings.db_url} (namespace {settings.surrealdb_ns}, database " \
            f"{settings.surrealdb_db})"
    report = Report(manifest, where)
    try:
        in_use = await _nonempty(db)
        local = _local_storage(settings) and bool(entries)
        media_dir = settings.media_dir.resolve()
        media_in_use = local and await asyncio.to_thread(_has_files, media_dir)
        if (in_use or media_in_use) and not force:
            raise RestoreRefused(_occupied(where, in_use, media_dir, media_in_use))
        staged_media = media_dir.with_name(media_dir.name + ".restoring")
        if local:  # the media first: nothing is written to the database if they fail
            await asyncio.to_thread(shutil.rmtree, staged_media, ignore_errors=True)
            report.media_bytes = await _copy_media(entries, origin, staged_media)
        if in_use:
            found = await snapshot.without_events(db)
            await db.write("".join(f"DELETE {t} RETURN NONE;"  # names match TABLE_NAME
                                   for t in await snapshot.tables(db)))
            await snapshot.restore_events(db, found)
        try:
            await _load(db, path, manifest, report)
        except BaseException as exc:
            await asyncio.to_thread(shutil.rmtree, staged_media, ignore_errors=True)
            raise RestoreRefused(
                f"the restore stopped part-way ({exc}); the database now holds part of the "
                "backup: run the restore again with --force") from exc
        if local:
            report.moved_aside = await asyncio.to_thread(
                _swap_media, media_dir, staged_media, media_in_use)
            report.media_into = str(media_dir)
        elif entries:
            report.media_bytes = await _upload_media(settings, entries, origin)
            report.media_into = "the S3 bucket"
        report.media_files = len(entries)
    finally:
        await db.close()
    return report


def _swap_media(media_dir: Path, staged: Path, keep: bool) -> list[str]:
    moved = []
    if media_dir.exists():
        if keep:
            aside = media_dir.with_name(
                f"{media_dir.name}.before-restore-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
            media_dir.rename(aside)
            moved.append(str(aside))
        else:
            shutil.rmtree(media_dir)
    staged.rename(media_dir)
    return moved
