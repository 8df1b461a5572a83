"""Library files on local disk under one root directory, served by the app's media route."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import BinaryIO

from app.storage.keys import validate_key


class LocalStorage:
    """Files at `root/key`. Writes are atomic (temp file + fsync + os.replace) and idempotent."""

    def __init__(self, root: Path, url_prefix: str = "/media") -> None:
        self.root = Path(root)
        self.url_prefix = url_prefix.rstrip("/")

    # -- paths ---------------------------------------------------------------------------

    def path_for(self, key: str) -> Path:
        """The file a (validated) key maps to; raises ValueError for an unsafe key."""
        return self.root / validate_key(key)

    # -- writes --------------------------------------------------------------------------

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        dest = self.path_for(key)
        await asyncio.to_thread(_atomic_write, dest, lambda f: f.write(data))

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        dest = self.path_for(key)
        await asyncio.to_thread(_atomic_copy, Path(path), dest)

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], content_type: str,
                         *, copy_to: Path | None = None) -> int:
        """Written to a temporary file beside the destination (about 1 MB per thread hop),
        moved into place only when the stream ends; `copy_to` becomes a hard link to it."""
        spool = await asyncio.to_thread(_Spool, self.path_for(key))
        try:
            pending: list[bytes] = []
            waiting = 0
            async for chunk in chunks:
                pending.append(chunk)
                waiting += len(chunk)
                if waiting >= _SPOOL_WRITE:
                    await asyncio.to_thread(spool.write, pending)
                    pending, waiting = [], 0
            return await asyncio.to_thread(spool.finish, pending, copy_to)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(spool.discard))
            raise

    async def delete(self, key: str) -> None:
        path = self.path_for(key)
        await asyncio.to_thread(_unlink_file, path)

    # -- reads ---------------------------------------------------------------------------

    async def get_bytes(self, key: str) -> bytes:
        path = self.path_for(key)
        return await asyncio.to_thread(_read_file, path)

    async def iter_bytes(self, key: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        path = self.path_for(key)
        f = await asyncio.to_thread(_open_file, path)
        try:
            while chunk := await asyncio.to_thread(f.read, chunk_size):
                yield chunk
        finally:
            f.close()

    async def exists(self, key: str) -> bool:
        path = self.path_for(key)
        return await asyncio.to_thread(path.is_file)

    async def size(self, key: str) -> int | None:
        path = self.path_for(key)
        try:
            st = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    # -- URLs ----------------------------------------------------------------------------

    async def url(self, key: str, expires: int = 3600) -> str:
        return f"{self.url_prefix}/{validate_key(key)}"

    def external_url(self, key: str, expires: int = 3600) -> str | None:
        validate_key(key)
        return None


def _open_file(path: Path) -> BinaryIO:
    """Open an object for reading; a directory or a path through a file is not an object."""
    try:
        return path.open("rb")
    except (IsADirectoryError, NotADirectoryError) as exc:
        raise FileNotFoundError(f"no such object: {path}") from exc


def _read_file(path: Path) -> bytes:
    with _open_file(path) as f:
        return f.read()


def _unlink_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
        if path.is_dir():
            return
        path.unlink()


def _atomic_write(dest: Path, write) -> None:
    """Write through a temp file in dest's directory, fsync it, then os.replace it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


_SPOOL_WRITE = 1024 * 1024


class _Spool:
    """put_stream's temporary file (in a worker thread): written, then fsynced and moved
    into place like _atomic_write's, or removed."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        self.tmp = Path(tmp)
        self.file = os.fdopen(fd, "wb")
        self.size = 0

    def write(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.file.write(piece)
            self.size += len(piece)

    def finish(self, pieces: list[bytes], copy_to: Path | None) -> int:
        self.write(pieces)
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.chmod(self.tmp, 0o644)  # mkstemp makes 0600 files
        if copy_to is not None:
            _link_or_copy(self.tmp, Path(copy_to))
        os.replace(self.tmp, self.dest)
        return self.size

    def discard(self) -> None:
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def _link_or_copy(src: Path, dest: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:  # another file system, or no hard links there
        shutil.copyfile(src, dest)


def _atomic_copy(src: Path, dest: Path) -> None:
    if not src.is_file():
        raise FileNotFoundError(src)
    with contextlib.suppress(FileNotFoundError):
        if dest.samefile(src):
            return
    with src.open("rb") as fsrc:
        _atomic_write(dest, lambda fdst: shutil.copyfileobj(fsrc, fdst, 1024 * 1024))
