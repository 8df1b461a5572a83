"""The storage interface both implementations satisfy (one shared test suite runs on both)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Protocol


class StorageError(Exception):
    """A permanent storage failure."""


class TransientStorageError(StorageError):
    """A storage failure worth retrying (5xx, timeouts, connection errors)."""


class Storage(Protocol):
    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store a file from disk without reading it whole into memory. Idempotent per key."""

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], content_type: str,
                         *, copy_to: Path | None = None) -> int:
        """Store what `chunks` yields and return its size, reading while earlier bytes are
        written. Nothing appears at `key` unless the iteration ends normally; an error of
        `chunks` is raised as it is, with nothing stored. `copy_to`: the bytes are also
        written to that file (for the caller: a poster is taken from it)."""

    async def get_bytes(self, key: str) -> bytes: ...

    def iter_bytes(self, key: str, chunk_size: int = 65536) -> AsyncIterator[bytes]: ...

    async def exists(self, key: str) -> bool: ...

    async def size(self, key: str) -> int | None: ...

    async def delete(self, key: str) -> None:
        """Delete; a missing key is not an error."""

    async def url(self, key: str, expires: int = 3600) -> str:
        """A URL a browser can fetch the object from (presigned, public, or an app route)."""

    def external_url(self, key: str, expires: int = 3600) -> str | None:
        """A URL reachable from the internet (for fal), or None when there is none."""
