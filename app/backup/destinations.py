"""Where backups go: a local directory (BACKUP_DIR) and/or an S3 prefix (BACKUP_S3_PREFIX
in S3_BUCKET). Both hold the archives side by side and a `media/` mirror of media files by
SHA-256 (media.py); the same calls work on both."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

from app.backup import archive
from app.backup import media as media_files
from app.settings import Settings

MEDIA_TYPE = "application/octet-stream"


class LocalDestination:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.mirror = self.root / "media"
        self.label = str(self.root)

    def location(self, name: str) -> str:
        return str(self.root / name)

    async def names(self) -> list[str]:
        """Archive names, newest first (names start with their UTC time)."""
        def listing() -> list[str]:
            if not self.root.is_dir():
                return []
            return sorted((p.name for p in self.root.iterdir() if archive.NAME.fullmatch(p.name)),
                          reverse=True)
        return await asyncio.to_thread(listing)

    async def size(self, name: str) -> int | None:
        try:
            return (await asyncio.to_thread((self.root / name).stat)).st_size
        except FileNotFoundError:
            return None

    def reader(self, name: str) -> archive.ReadAt:
        path = self.root / name

        async def read_at(start: int, length: int) -> bytes:
            def read() -> bytes:
                with path.open("rb") as f:
                    f.seek(start)
                    return f.read(length)
            return await asyncio.to_thread(read)

        return read_at

    async def put_archive(self, path: Path, name: str) -> str:
        def put() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            dest = self.root / name
            try:
                os.link(path, dest)
            except OSError:
                os.replace(path, dest)
        await asyncio.to_thread(put)
        return self.location(name)

    async def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread((self.root / name).unlink)

    async def media_hashes(self) -> set[str]:
        return await asyncio.to_thread(lambda: set(media_files.mirror_hashes(self.mirror)))

    async def put_media(self, sha: str, path: Path) -> bool:
        return await asyncio.to_thread(media_files.put_mirror, self.mirror, sha, path)

    async def delete_media(self, sha: str) -> None:
        await asyncio.to_thread(media_files.remove_mirror, self.mirror, sha)

    def media_source(self, sha: str) -> Path:
        return media_files.mirror_path(self.mirror, sha)


class S3Destination:
    def __init__(self, storage: Any, prefix: str):
        self.storage = storage  # app.storage.s3.S3Storage
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.label = f"s3://{storage.bucket}/{self.prefix}"

    def location(self, name: str) -> str:
        return f"s3://{self.storage.bucket}/{self.prefix}{name}"

    def _media_key(self, sha: str) -> str:
        return f"{self.prefix}media/{sha}"

    async def names(self) -> list[str]:
        found = await self.storage.list_objects(self.prefix, delimiter="/")
        names = (key[len(self.prefix):] for key, _size in found)
        return sorted((n for n in names if archive.NAME.fullmatch(n)), reverse=True)

    async def size(self, name: str) -> int | None:
        return await self.storage.size(self.prefix + name)

    def reader(self, name: str) -> archive.ReadAt:
        key = self.prefix + name

        async def read_at(start: int, length: int) -> bytes:
            return await self.storage.read_range(key, start, length) if length else b""

        return read_at

    async def put_archive(self, path: Path, name: str) -> str:
        await self.storage.put_file(self.prefix + name, path, "application/x-tar")
        return self.location(name)

    async def delete(self, name: str) -> None:
        await self.storage.delete(self.prefix + name)

    async def media_hashes(self) -> set[str]:
        found = await self.storage.list_objects(f"{self.prefix}media/")
        return {key.rsplit("/", 1)[1] for key, _size in found}

    async def put_media(self, sha: str, path: Path) -> bool:
        await self.storage.put_file(self._media_key(sha), path, MEDIA_TYPE)
        return True

    async def delete_media(self, sha: str) -> None:
        await self.storage.delete(self._media_key(sha))

    async def fetch(self, name: str, dest: Path) -> None:
        await self.storage.download_file(self.prefix + name, dest)

    async def fetch_media(self, sha: str, dest: Path) -> None:
        await self.storage.download_file(self._media_key(sha), dest)


Destination = LocalDestination | S3Destination


def s3_storage(settings: Settings) -> Any:
    """The S3_* bucket, whatever STORAGE says (local media can be backed up to a bucket)."""
    if not settings.s3_bucket:
        raise ValueError("BACKUP_S3_PREFIX needs S3_BUCKET (and its S3_* settings)")
    from app.storage.s3 import S3Storage

    return S3Storage(bucket=settings.s3_bucket, endpoint_url=settings.s3_endpoint_url,
                     region=settings.s3_region, access_key_id=settings.aws_access_key_id,
                     secret_access_key=settings.aws_secret_access_key)


def destinations(settings: Settings) -> list[Destination]:
    found: list[Destination] = []
    if settings.backup_local or not settings.backup_s3_prefix:
        found.append(LocalDestination(settings.backups_path))
    if settings.backup_s3_prefix:
        found.append(S3Destination(s3_storage(settings), settings.backup_s3_prefix))
    return found
