"""Storage.put_stream on both backends: LocalStorage on a temp dir, S3Storage on moto over
HTTP (multipart, 8 MB parts), plus S3 faults through the fault-injecting proxy."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from app.storage.base import TransientStorageError
from app.storage.local import LocalStorage
from app.storage.s3 import S3Storage
from tests.fakes.s3_faults import S3FaultProxy, s3_faults_fixture  # noqa: F401
from tests.fakes.s3_server import S3Server, s3_server_fixture  # noqa: F401
from tests.storage_fixtures import (  # noqa: F401
    prefix_fixture,
    s3_storage_fixture,
    storage_fixture,
)

MB = 1024 * 1024
CHUNK = 256 * 1024


class SourceBroke(Exception):
    """What the chunks' source (a download) raises in these tests."""








@pytest.fixture(scope="module")
def video() -> bytes:
    return os.urandom(20 * MB + 12345)  # three 8 MB parts, the last one short


async def chunks_of(data: bytes, *, fail_after: int | None = None,
                    stall_after: int | None = None,
                    stalled: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    """`data` in 256 KiB chunks, as a download yields them; raises SourceBroke once
    `fail_after` bytes were given, or waits for ever (setting `stalled`) after
    `stall_after` bytes."""
    for start in range(0, len(data), CHUNK):
        if fail_after is not None and start >= fail_after:
            raise SourceBroke("connection reset mid-download")
        if stall_after is not None and start >= stall_after:
            assert stalled is not None
            stalled.set()
            await asyncio.Event().wait()
        yield data[start:start + CHUNK]


def pending_uploads(store: S3Storage, key: str) -> list[dict]:
    found = store._client.list_multipart_uploads(Bucket=store.bucket, Prefix=key)
    return found.get("Uploads", [])


def leftovers(storage, key: str) -> list[str]:
    """What a failed stream may have left: temporary files (local), open multipart
    uploads (S3)."""
    if isinstance(storage, LocalStorage):
        folder = storage.path_for(key).parent
        return [p.name for p in folder.iterdir()] if folder.exists() else []
    return [u["UploadId"] for u in pending_uploads(storage, key)]


async def test_a_stream_of_several_parts_arrives_byte_identical(storage, prefix, video,
                                                                tmp_path):
    key = f"{prefix}/videos/a.mp4"
    copy = tmp_path / "copy.mp4"
    size = await storage.put_stream(key, chunks_of(video), "video/mp4", copy_to=copy)
    assert size == len(video) == await storage.size(key)
    assert hashlib.sha256(await storage.get_bytes(key)).digest() == hashlib.sha256(video).digest()
    assert copy.read_bytes() == video  # the caller's copy (the poster is taken from it)
    if isinstance(storage, S3Storage):
        head = storage._client.head_object(Bucket=storage.bucket, Key=key)
        assert head["ETag"].strip('"').endswith("-3")  # a multipart upload of 3 parts
        assert head["ContentType"] == "video/mp4"
        assert pending_uploads(storage, key) == []


async def test_a_stream_smaller_than_a_part_and_an_empty_one(storage, prefix, tmp_path):
    small = os.urandom(700_000)
    key = f"{prefix}/videos/small.mp4"
    assert await storage.put_stream(key, chunks_of(small), "video/mp4") == len(small)
    assert await storage.get_bytes(key) == small
    empty = f"{prefix}/videos/empty.mp4"
    assert await storage.put_stream(empty, chunks_of(b""), "video/mp4",
                                    copy_to=tmp_path / "e") == 0
    assert await storage.size(empty) == 0 and (tmp_path / "e").read_bytes() == b""


async def test_an_error_mid_stream_stores_nothing_and_leaves_no_upload(storage, prefix, video):
    key = f"{prefix}/videos/broken.mp4"
    with pytest.raises(SourceBroke):  # the source's own error, not a storage error
        await storage.put_stream(key, chunks_of(video, fail_after=18 * MB), "video/mp4")
    assert await storage.size(key) is None
    assert leftovers(storage, key) == []


async def test_a_retry_after_a_failed_stream_stores_the_whole(storage, prefix, video):
    key = f"{prefix}/videos/again.mp4"
    with pytest.raises(SourceBroke):
        await storage.put_stream(key, chunks_of(video, fail_after=9 * MB), "video/mp4")
    assert await storage.put_stream(key, chunks_of(video), "video/mp4") == len(video)
    assert await storage.get_bytes(key) == video


async def test_a_cancelled_stream_stores_nothing(storage, prefix, video):
    key = f"{prefix}/videos/cancelled.mp4"
    stalled = asyncio.Event()
    task = asyncio.create_task(storage.put_stream(
        key, chunks_of(video, stall_after=12 * MB, stalled=stalled), "video/mp4"))
    await asyncio.wait_for(stalled.wait(), 30)  # 12 MB in: one part sent or being sent
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)  # the abort runs on in its thread
    assert await storage.size(key) is None
    assert leftovers(storage, key) == []


async def test_s3_a_failed_part_aborts_the_upload(s3_faults: S3FaultProxy, prefix, video):
    store = s3_faults.storage(max_attempts=1)  # botocore does not retry the part
    key = f"{prefix}/videos/part-fails.mp4"

    async def fault_after_the_first_part() -> AsyncIterator[bytes]:
        armed = False
        async for chunk in chunks_of(video):
            yield chunk
            if not armed and s3_faults.requests >= 1:  # the upload was created
                s3_faults.fail_next(1)  # the next request (a part, or the complete): 503
                armed = True

    try:
        with pytest.raises(TransientStorageError):
            await store.put_stream(key, fault_after_the_first_part(), "video/mp4")
        assert s3_faults.faults_served == 1
        assert await store.size(key) is None
        assert pending_uploads(store, key) == []  # aborted (through the proxy, after the 503)
    finally:
        store.close()


async def test_s3_parts_in_memory_are_bounded(s3_server: S3Server, prefix):
    """With 2 part buffers, 4 streams of 3 parts share them: every stream completes, and
    at no time are more than 2 parts of 8 MB filling or uploading."""
    store = s3_server.storage(stream_parts=2)
    data = os.urandom(17 * MB)
    busiest = 0

    async def watched(n: int) -> AsyncIterator[bytes]:
        nonlocal busiest
        async for chunk in chunks_of(data):
            busiest = max(busiest, store._part_buffers._out)
            yield chunk

    try:
        sizes = await asyncio.wait_for(asyncio.gather(*(
            store.put_stream(f"{prefix}/v{i}.mp4", watched(i), "video/mp4")
            for i in range(4))), 60)
        assert sizes == [len(data)] * 4
        assert busiest == 2
        for i in range(4):
            assert await store.get_bytes(f"{prefix}/v{i}.mp4") == data
    finally:
        store.close()
