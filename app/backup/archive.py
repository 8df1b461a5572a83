"""The backup file: an uncompressed tar (USTAR) of three members, in this order:

- `manifest.json`: when, from what, schema version, rows per table, media totals, and the
  size and SHA-256 of the two other members. First, so listing backups reads only it.
- `media.jsonl.gz`: one line per media file at backup time, `{"key", "size", "sha256",
  "mtime_ns"}`; the files themselves are in a content-addressed mirror beside the backups
  (media.py), shared by all backups, so each backup adds only what is new.
- `database.jsonl.gz`: one line per record, `[table, literal]`, where `literal` is the
  record in SurrealQL's own syntax as the engine prints it (`<string> $this`): record ids of
  every shape, datetimes to the nanosecond, durations, bytes, decimals, uuids and NONE/NULL
  come back exactly as they were, read back by the engine's own parser on restore (the way
  `surreal export` / `surreal import` work). It is also 2-4 times faster to read than
  decoding records through the SDK.

Everything here is blocking file work: callers run it in a thread."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

FORMAT = "reelforge-backup"
FORMAT_VERSION = 1
MANIFEST, MEDIA, DATABASE = "manifest.json", "media.jsonl.gz", "database.jsonl.gz"
MEMBERS = (MANIFEST, MEDIA, DATABASE)
# The time to the microsecond first, so that names sort by age (backups are one at a time).
NAME = re.compile(r"reelforge-\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{4}\.tar")
BLOCK = 512
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class BackupInvalid(Exception):
    """Not a complete, intact backup this version can restore (the message says why)."""


def new_name(at: datetime) -> str:
    return f"reelforge-{at:%Y%m%dT%H%M%S.%fZ}-{os.urandom(2).hex()}.tar"


class _Hashing(io.RawIOBase):
    """Counts and hashes the bytes written through it."""

    def __init__(self, inner: BinaryIO):
        self.inner, self.sha, self.size = inner, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.inner.write(data)


class LinesMember:
    """A gzip'd member written a batch of lines at a time (the database member is written
    while the snapshot is read, a page at a time); `close` gives its size and SHA-256."""

    def __init__(self, path: Path):
        self._raw = path.open("wb")
        self._hashing = _Hashing(self._raw)
        # mtime=0: the same content makes the same bytes
        self._gz = gzip.GzipFile(fileobj=self._hashing, mode="wb", compresslevel=6, mtime=0)

    def write(self, lines: Iterable[str]) -> None:
        chunk: list[str] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) >= 1000:
                self._gz.write("".join(chunk).encode())
                chunk.clear()
        self._gz.write("".join(chunk).encode())

    def close(self) -> dict[str, Any]:
        self._gz.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        return {"bytes": self._hashing.size, "sha256": self._hashing.sha.hexdigest()}

    def discard(self) -> None:
        """Close the file after a failure (the caller removes it)."""
        self._raw.close()


def _write_lines(path: Path, lines: Iterable[str]) -> dict[str, Any]:
    """gzip'd lines to `path`; returns the member's size and SHA-256."""
    member = LinesMember(path)
    try:
        member.write(lines)
    except BaseException:
        member.discard()
        raise
    return member.close()


def record_lines(table: str, literals: Iterable[str]) -> Iterator[str]:
    """The database member's lines for records of one table."""
    for literal in literals:
        yield json.dumps([table, literal], ensure_ascii=False) + "\n"


def write_media(path: Path, entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return _write_lines(path, (json.dumps(e, sort_keys=True) + "\n" for e in entries))


def write_archive(dest: Path, manifest: dict[str, Any], members: dict[str, Path]) -> int:
    """The tar at `dest`, made whole before it appears (temp file, fsync, rename)."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    now = int(time.time())
    try:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            sealed = {**manifest, "manifest_sha256": _seal(manifest)}
            body = json.dumps(sealed, indent=1, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(body), now, 0o644
            tar.addfile(info, io.BytesIO(body))
            for name in (MEDIA, DATABASE):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = members[name].stat().st_size, now, 0o644
                with members[name].open("rb") as f:
                    tar.addfile(info, f)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)
    return dest.stat().st_size


def _seal(manifest: dict[str, Any]) -> str:
    """The manifest's own checksum (over its canonical JSON without this field)."""
    rest = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- reading ------------------------------------------------------------------------------

ReadAt = Callable[[int, int], Awaitable[bytes]]


def _header(buf: bytes, expected: str, where: str) -> tarfile.TarInfo:
    if len(buf) < BLOCK:
        raise BackupInvalid(f"{where} ends before its {expected} member (truncated?)")
    try:
        info = tarfile.TarInfo.frombuf(buf[:BLOCK], tarfile.ENCODING, "surrogateescape")
    except tarfile.TarError as exc:
        raise BackupInvalid(f"{where} is not a backup archive ({exc})") from None
    if info.name != expected:
        raise BackupInvalid(f"{where} has {info.name!r} where {expected!r} belongs")
    return info


def _manifest(data: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise BackupInvalid(f"{where} has an unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupInvalid(f"{where} is not a Reelforge backup")
    if manifest.get("manifest_sha256") != _seal(manifest):
        raise BackupInvalid(f"{where} has a damaged manifest (its checksum does not match)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupInvalid(f"{where} is in backup format {manifest.get('format_version')}; "
                            f"this version reads format {FORMAT_VERSION}")
    return manifest


def _media_entries(data: bytes, manifest: dict[str, Any], where: str) -> list[dict[str, Any]]:
    _check_member(MEDIA, len(data), hashlib.sha256(data).hexdigest(), manifest, where)
    try:
        return [json.loads(line) for line in gzip.decompress(data).splitlines() if line]
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise BackupInvalid(f"{where}: {MEDIA} is damaged ({exc})") from None


def _check_member(name: str, size: int, sha: str, manifest: dict[str, Any], where: str) -> None:
    want = manifest.get("members", {}).get(name, {})
    if size != want.get("bytes"):
        raise BackupInvalid(f"{where}: {name} has {size} bytes, the manifest says "
                            f"{want.get('bytes')} (truncated or damaged)")
    if sha != want.get("sha256"):
        raise BackupInvalid(f"{where}: the SHA-256 of {name} does not match the manifest "
                            "(the file is damaged)")


async def read_index(read_at: ReadAt, where: str, *, media: bool = True
                     ) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """The manifest (and the media list) from the start of an archive through ranged reads,
    so listing backups in a bucket fetches a few kilobytes each, not whole archives."""
    info = _header(await read_at(0, BLOCK), MANIFEST, where)
    body = await read_at(BLOCK, info.size)
    if len(body) != info.size:
        raise BackupInvalid(f"{where} ends inside its manifest (truncated)")
    manifest = _manifest(body, where)
    if not media:
        return manifest, None
    offset = BLOCK + _padded(info.size)
    info = _header(await read_at(offset, BLOCK), MEDIA, where)
    data = await read_at(offset + BLOCK, info.size)
    return manifest, _media_entries(data, manifest, where)


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


def verify(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read the whole archive: the members in order, each one's size and SHA-256 against
    the manifest, every database line decoded and counted per table against the manifest.
    Returns (manifest, media entries); raises BackupInvalid with the reason otherwise."""
    where = path.name
    try:
        with tarfile.open(path, "r:") as tar:
            info = tar.next()
            if info is None or info.name != MANIFEST:
                raise BackupInvalid(f"{where} does not start with a backup manifest")
            manifest = _manifest(_read_member(tar, info), where)
            info = tar.next()
            if info is None or info.name != MEDIA:
                raise BackupInvalid(f"{where} ends before its media list (truncated?)")
            media = _media_entries(_read_member(tar, info), manifest, where)
            info = tar.next()
            if info is None or info.name != DATABASE:
                raise BackupInvalid(f"{where} ends before its database (truncated?)")
            # First the checksum (any damage is reported as such), then every record.
            f = tar.extractfile(info)
            assert f is not None
            sha, size = hashlib.sha256(), 0
            while chunk := f.read(1 << 20):
                sha.update(chunk)
                size += len(chunk)
            _check_member(DATABASE, size, sha.hexdigest(), manifest, where)
            f = tar.extractfile(info)
            counts: dict[str, int] = {}
            for table, _literal in _rows(f, where):  # type: ignore[arg-type]
                counts[table] = counts.get(table, 0) + 1
            if tar.next() is not None:
                raise BackupInvalid(f"{where} has members a backup does not have")
            spans = [(m.offset_data, m.size) for m in tar.getmembers()]
        _only_zeros_besides(path, spans, where)
    except BackupInvalid:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BackupInvalid(f"{where} is not an intact backup: it is truncated or damaged "
                            f"({exc})") from None
    expected = {t: n for t, n in manifest.get("tables", {}).items() if n}
    if counts != expected:
        raise BackupInvalid(f"{where}: the records found ({counts}) are not those the "
                            f"manifest lists ({expected})")
    return manifest, media


def _only_zeros_besides(path: Path, spans: list[tuple[int, int]], where: str) -> None:
    """The bytes that are neither a header (tar checks their checksums) nor a member's data
    (checked against the manifest) are the zero padding and the end of the archive: any
    other byte there means damage, and a missing end means the file was cut short."""
    with path.open("rb") as f:
        for start, size in spans:
            f.seek(start + size)
            if f.read(_padded(size) - size).strip(b"\0"):
                raise BackupInvalid(f"{where} is damaged (bytes in the padding of a member)")
        tail = f.read()
    # tar writes whole records (RECORDSIZE) and ends with two zero blocks
    if len(tail) < 2 * BLOCK or path.stat().st_size % tarfile.RECORDSIZE:
        raise BackupInvalid(f"{where} is truncated (the end of the archive is missing)")
    if tail.strip(b"\0"):
        raise BackupInvalid(f"{where} is damaged (bytes after the end of the archive)")


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(info)
    assert f is not None
    data = f.read()
    if len(data) != info.size:
        raise BackupInvalid(f"{info.name} is truncated")
    return data


def _rows(raw: BinaryIO, where: str) -> Iterator[tuple[str, str]]:
    try:
        with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            for number, line in enumerate(gz, 1):
                row = json.loads(line)
                if (not isinstance(row, list) or len(row) != 2
                        or not isinstance(row[0], str) or not TABLE_NAME.fullmatch(row[0])
                        or not isinstance(row[1], str)):
                    raise BackupInvalid(f"{where}: line {number} of {DATABASE} is not a record")
                yield row[0], row[1]
    except (ValueError, zlib.error) as exc:  # JSON, UTF-8 and gzip's BadGzipFile
        raise BackupInvalid(f"{where}: {DATABASE} is damaged ({exc})") from None


def iter_rows(path: Path) -> Iterator[tuple[str, str]]:
    """(table, literal) of every record, for a restore (after `verify`)."""
    with tarfile.open(path, "r:") as tar:
        for info in tar:
            if info.name == DATABASE:
                f = tar.extractfile(info)
                assert f is not None
                yield from _rows(f, path.name)  # type: ignore[arg-type]
                return
