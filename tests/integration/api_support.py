"""Helpers for the HTTP-layer tests (test_auth, test_csrf, test_library_api, test_submit_api,
test_xss): a second person on the same running app, an app whose driver is stopped so jobs
stay pending, running database calls on the app's own event loop, and odd files to upload."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from app.db import jobs as jobs_db
from app.db import users as users_db
from app.db.records import User, VideoJob
from app.main import create_app
from app.settings import Settings
from tests.helpers import Account

BASE_URL = "http://testserver.local"


def in_app(client: AsyncTestClient, fn, *args: Any) -> Any:
    """Run `await fn(*args)` on the app's event loop (the test client serves the app from a
    thread of its own; the database's write lock belongs to that loop)."""
    return client.blocking_portal.call(fn, *args)


@asynccontextmanager
async def sharing(client: AsyncTestClient) -> AsyncIterator[AsyncTestClient]:
    """Another browser (its own cookies) on the same running app. Entering a second
    AsyncTestClient would run the lifespan again and swap in a fresh database, so this one
    borrows the first client's portal instead."""
    other = AsyncTestClient(client.app, base_url=str(client.base_url))
    other.blocking_portal = client.blocking_portal
    yield other  # nothing to close: the transport holds no connections


@asynccontextmanager
async def running_app(settings: Settings, *, idle: bool = False,
                      base_url: str = BASE_URL) -> AsyncIterator[AsyncTestClient]:
    """The whole app; with idle=True the job driver is stopped right after start-up, so
    submitted jobs stay pending (nothing completes or fails behind the test's back)."""
    async with AsyncTestClient(create_app(settings), base_url=base_url) as client:
        if idle:
            in_app(client, client.app.state.services.driver.stop)
        yield client


def user_id(client: AsyncTestClient, email: str) -> str:
    user = in_app(client, users_db.by_email, client.app.state.services.db, email)
    assert user is not None, email
    return user.id


def user_row(client: AsyncTestClient, email: str) -> User | None:
    return in_app(client, users_db.by_email, client.app.state.services.db, email)


def job_row(client: AsyncTestClient, job_id: str) -> VideoJob | None:
    return in_app(client, jobs_db.get, client.app.state.services.db, job_id)


def count(client: AsyncTestClient, table: str) -> int:
    db = client.app.state.services.db
    rows = in_app(client, db.read_one, f"SELECT count() AS n FROM {table} GROUP ALL")
    return int(rows[0]["n"]) if rows else 0


def media_files(settings: Settings) -> list[Path]:
    """Every stored file under local storage (temp files included)."""
    root = settings.media_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def signup(client: AsyncTestClient, email: str) -> Account:
    return await Account.signup(client, email)


# -- images and things that only look like images -----------------------------------------

def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (8, 6),
                color: tuple[int, int, int] = (200, 90, 40)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit grayscale PNG of one colour: tens of kilobytes on disk, `width x height`
    pixels once decoded (a decompression bomb)."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte + packed pixels
    z = zlib.compressobj(9)
    parts = [z.compress(row) for _ in range(height)]
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts))
            + _chunk(b"IEND", b""))
