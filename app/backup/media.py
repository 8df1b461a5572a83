"""Local media (STORAGE=local), incrementally.

Every backup lists every media file (key, size, SHA-256). The files themselves go into a
mirror beside the backups, named by their SHA-256, shared by every backup: a backup adds
only files whose content the mirror lacks, and a file kept by several backups is stored
once. A file unchanged since the previous backup (same key, size and mtime) keeps its hash
without being read again, as rsync's quick check does.

A new file is first hard-linked (copied when the mirror is on another disk) to a temp name,
and hashed from that link: the app replaces files (temp file + rename) and never writes
into one, so the linked content cannot change under the hash. With STORAGE=s3 the bucket
holds the media: back it up with bucket versioning (docs/OPERATIONS.md)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.storage.keys import validate_key


@dataclass
class Found:
    key: str
    path: Path
    size: int
    mtime_ns: int


def scan(root: Path) -> Iterator[Found]:
    """Every media file under `root` with a valid key (the app's temp files, whose names
    start with a dot, are not media)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = Path(folder, name)
            try:
                key = validate_key(path.relative_to(root).as_posix())
                st = path.lstat()
            except (ValueError, FileNotFoundError):
                continue
            if path.is_symlink() or not path.is_file():
                continue
            yield Found(key, path, st.st_size, st.st_mtime_ns)


def sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def stage(found: Found, incoming: Path) -> tuple[Path, str, int] | None:
    """A stable copy of a media file in `incoming` (a hard link when it can be): (path,
    sha256, size); None when the file went away meanwhile."""
    incoming.mkdir(parents=True, exist_ok=True)
    tmp = incoming / uuid.uuid4().hex
    try:
        os.link(found.path, tmp)
    except FileNotFoundError:
        return None
    except OSError:  # another file system, or links not allowed: copy
        try:
            shutil.copyfile(found.path, tmp)
        except FileNotFoundError:
            return None
    return tmp, sha256_file(tmp), tmp.stat().st_size


def mirror_path(root: Path, sha: str) -> Path:
    return root / sha[:2] / sha


def put_mirror(root: Path, sha: str, source: Path) -> bool:
    """Add `source` to the mirror at `root` under its hash; False when it was there."""
    dest = mirror_path(root, sha)
    if dest.exists():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{sha}.{uuid.uuid4().hex[:8]}")
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, dest)
    return True


def mirror_hashes(root: Path) -> Iterator[str]:
    if not root.is_dir():
        return
    for sub in root.iterdir():
        if sub.is_dir() and len(sub.name) == 2:
            for f in sub.iterdir():
                if not f.name.startswith("."):
                    yield f.name


def remove_mirror(root: Path, sha: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        mirror_path(root, sha).unlink()


def entry(key: str, size: int, sha: str, mtime_ns: int) -> dict[str, Any]:
    return {"key": key, "size": size, "sha256": sha, "mtime_ns": mtime_ns}
