"""One suite for both storage backends: LocalStorage on a temp dir, S3Storage on moto over HTTP.

Plus S3 fault tests through a fault-injecting proxy in front of moto.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import uuid
from pathlib import Path

import httpx
import pytest

from app.settings import Settings
from app.storage.base import StorageError, TransientStorageError
from app.storage.factory import make_storage
from app.storage.keys import validate_key
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
BAD_KEYS = [
    "../x",
    "/abs",
    "a//b",
    "a\\b",
    "",
    "a/../b",
    "./a",
    "a/",
    "a\x00b",
    "a b",
    "a/é.png",
    "a?b",
    "x" * 1025,
]








@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> tuple[Path, str]:
    """A 20 MB file of random bytes and its sha256, written in 1 MB blocks."""
    path = tmp_path_factory.mktemp("big") / "video.mp4"
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(20):
            block = os.urandom(MB)
            digest.update(block)
            f.write(block)
    return path, digest.hexdigest()


async def sha256_of(storage, key: str) -> tuple[str, int, int]:
    """Hash an object through iter_bytes; returns (hexdigest, total bytes, largest chunk)."""
    digest, total, largest = hashlib.sha256(), 0, 0
    async for chunk in storage.iter_bytes(key, chunk_size=MB):
        digest.update(chunk)
        total += len(chunk)
        largest = max(largest, len(chunk))
    return digest.hexdigest(), total, largest


# -- the shared suite --------------------------------------------------------------------


async def test_put_bytes_get_bytes_roundtrip(storage, prefix):
    key = f"{prefix}/image.png"
    data = os.urandom(3000)
    await storage.put_bytes(key, data, "image/png")
    assert await storage.get_bytes(key) == data
    assert await storage.exists(key)
    assert await storage.size(key) == 3000


async def test_empty_object(storage, prefix):
    key = f"{prefix}/empty.bin"
    await storage.put_bytes(key, b"", "application/octet-stream")
    assert await storage.get_bytes(key) == b""
    assert await storage.exists(key)
    assert await storage.size(key) == 0
    assert [c async for c in storage.iter_bytes(key)] == []


async def test_put_file_20mb_streams_and_matches(storage, prefix, big_file):
    path, expected = big_file
    key = f"{prefix}/video.mp4"
    await storage.put_file(key, path, "video/mp4")
    assert await storage.size(key) == 20 * MB
    got, total, largest = await sha256_of(storage, key)
    assert got == expected
    assert total == 20 * MB
    assert largest <= MB  # iter_bytes honoured chunk_size
    if isinstance(storage, S3Storage):
        # Sent as a multipart upload (8 MB parts): S3 ETags of multipart objects end in -N.
        head = storage._client.head_object(Bucket=storage.bucket, Key=key)
        assert head["ETag"].strip('"').endswith("-3")
        assert head["ContentType"] == "video/mp4"


async def test_put_file_missing_source(storage, prefix, tmp_path):
    with pytest.raises(FileNotFoundError):
        await storage.put_file(f"{prefix}/x.mp4", tmp_path / "nope.mp4", "video/mp4")
    assert not await storage.exists(f"{prefix}/x.mp4")


async def test_reput_is_idempotent_and_last_write_wins(storage, prefix, tmp_path):
    key = f"{prefix}/clip.mp4"
    src = tmp_path / "clip.mp4"
    src.write_bytes(b"first version")
    await storage.put_file(key, src, "video/mp4")
    await storage.put_file(key, src, "video/mp4")  # same content again: fine
    assert await storage.get_bytes(key) == b"first version"
    await storage.put_bytes(key, b"second", "video/mp4")
    assert await storage.get_bytes(key) == b"second"
    assert await storage.size(key) == 6


async def test_concurrent_puts_of_one_key(storage, prefix):
    key = f"{prefix}/race.bin"
    payloads = [bytes([i]) * 50_000 for i in range(8)]
    await asyncio.gather(*(storage.put_bytes(key, p, "application/octet-stream") for p in payloads))
    assert await storage.get_bytes(key) in payloads


async def test_exists_and_size_of_missing_key(storage, prefix):
    assert not await storage.exists(f"{prefix}/missing.png")
    assert await storage.size(f"{prefix}/missing.png") is None


async def test_get_and_iter_missing_key_raise_file_not_found(storage, prefix):
    with pytest.raises(FileNotFoundError):
        await storage.get_bytes(f"{prefix}/missing.png")
    with pytest.raises(FileNotFoundError):
        async for _ in storage.iter_bytes(f"{prefix}/missing.png"):
            pass


async def test_delete_and_delete_missing(storage, prefix):
    key = f"{prefix}/gone.png"
    await storage.put_bytes(key, b"bye", "image/png")
    await storage.delete(key)
    assert not await storage.exists(key)
    assert await storage.size(key) is None
    with pytest.raises(FileNotFoundError):
        await storage.get_bytes(key)
    await storage.delete(key)  # again: not an error
    await storage.delete(f"{prefix}/never-existed.png")


async def test_a_prefix_is_not_an_object(storage, prefix):
    key = f"{prefix}/dir/a.png"
    await storage.put_bytes(key, b"a", "image/png")
    for not_an_object in (f"{prefix}/dir", f"{prefix}/dir/a.png/b"):
        assert not await storage.exists(not_an_object)
        assert await storage.size(not_an_object) is None
        with pytest.raises(FileNotFoundError):
            await storage.get_bytes(not_an_object)
        with pytest.raises(FileNotFoundError):
            async for _ in storage.iter_bytes(not_an_object):
                pass
        await storage.delete(not_an_object)
    assert await storage.get_bytes(key) == b"a"


async def test_iter_bytes_stopped_early(storage, prefix):
    key = f"{prefix}/early.bin"
    await storage.put_bytes(key, os.urandom(10_000), "application/octet-stream")
    stream = storage.iter_bytes(key, chunk_size=1000)
    first = await anext(stream)
    assert len(first) == 1000
    await stream.aclose()
    assert await storage.size(key) == 10_000


async def test_iter_bytes_in_chunks(storage, prefix):
    key = f"{prefix}/chunks.bin"
    data = os.urandom(2500)
    await storage.put_bytes(key, data, "application/octet-stream")
    chunks = [c async for c in storage.iter_bytes(key, chunk_size=1000)]
    assert b"".join(chunks) == data
    assert all(0 < len(c) <= 1000 for c in chunks)
    assert len(chunks) >= 3


async def test_url(storage, prefix):
    key = f"{prefix}/pic.png"
    data = os.urandom(1234)
    await storage.put_bytes(key, data, "image/png")
    url = await storage.url(key)
    if isinstance(storage, LocalStorage):
        assert url == f"/media/{key}"
        assert storage.external_url(key) is None
        return
    assert url.startswith(storage.endpoint_url)
    assert "X-Amz-Signature=" in url
    external = storage.external_url(key)
    assert external is not None
    async with httpx.AsyncClient() as http:
        for u in (url, external):
            response = await http.get(u)
            assert response.status_code == 200
            assert response.content == data
            assert response.headers["content-type"] == "image/png"


@pytest.mark.parametrize("bad", BAD_KEYS)
async def test_invalid_keys_rejected(storage, bad, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x")
    with pytest.raises(ValueError):
        await storage.put_bytes(bad, b"x", "image/png")
    with pytest.raises(ValueError):
        await storage.put_file(bad, src, "image/png")
    with pytest.raises(ValueError):
        await storage.get_bytes(bad)
    with pytest.raises(ValueError):
        async for _ in storage.iter_bytes(bad):
            pass
    with pytest.raises(ValueError):
        await storage.exists(bad)
    with pytest.raises(ValueError):
        await storage.size(bad)
    with pytest.raises(ValueError):
        await storage.delete(bad)
    with pytest.raises(ValueError):
        await storage.url(bad)
    with pytest.raises(ValueError):
        storage.external_url(bad)


# -- backend specifics -------------------------------------------------------------------


def test_validate_key_accepts_library_keys():
    for key in ["users/abc/library/2024-01-01T00-00-00_img.png", "a", "a/b.c/d_e-f", ".hidden"]:
        assert validate_key(key) == key


async def test_local_layout_and_atomic_writes(tmp_path):
    store = LocalStorage(tmp_path / "media", url_prefix="/files/")
    key = "users/u1/library/a.png"
    await store.put_bytes(key, b"png", "image/png")
    assert store.path_for(key) == tmp_path / "media" / "users/u1/library/a.png"
    assert store.path_for(key).read_bytes() == b"png"
    assert await store.url(key) == "/files/users/u1/library/a.png"
    # No temp files are left behind beside the object.
    assert sorted(p.name for p in store.path_for(key).parent.iterdir()) == ["a.png"]
    with pytest.raises(ValueError):
        store.path_for("../etc/passwd")


async def test_local_put_file_onto_itself_is_a_no_op(tmp_path):
    store = LocalStorage(tmp_path)
    key = "users/u1/library/v.mp4"
    await store.put_bytes(key, b"video", "video/mp4")
    await store.put_file(key, store.path_for(key), "video/mp4")
    assert await store.get_bytes(key) == b"video"


async def test_s3_public_base_url(s3_server, prefix):
    store = s3_server.storage(public_base_url="https://cdn.example.com/")
    key = f"{prefix}/pic.png"
    assert await store.url(key) == f"https://cdn.example.com/{key}"
    assert store.external_url(key) == f"https://cdn.example.com/{key}"
    store.close()


async def test_s3_put_bytes_sets_content_type(s3_server, prefix):
    store = s3_server.storage()
    key = f"{prefix}/pic.webp"
    await store.put_bytes(key, b"RIFF", "image/webp")
    head = s3_server.client().head_object(Bucket=s3_server.bucket, Key=key)
    assert head["ContentType"] == "image/webp"
    store.close()


async def test_s3_ensure_bucket_creates_and_is_idempotent(s3_server):
    name = f"ensure-{uuid.uuid4().hex[:12]}"
    store = s3_server.storage(bucket=name)
    await store.ensure_bucket()
    await store.ensure_bucket()
    await store.put_bytes("k", b"v", "text/plain")
    assert await store.get_bytes("k") == b"v"
    store.close()


def test_factory(tmp_path, s3_server):
    local = make_storage(Settings(storage="local", data_dir=tmp_path))
    assert isinstance(local, LocalStorage)
    assert local.root == tmp_path / "media"

    s3 = make_storage(
        Settings(
            storage="s3",
            s3_bucket=s3_server.bucket,
            s3_endpoint_url=s3_server.endpoint_url,
            s3_region="us-east-1",
            aws_access_key_id="k",
            aws_secret_access_key="s",  # noqa: S106
            s3_public_base_url="https://cdn.example.com",
        )
    )
    assert isinstance(s3, S3Storage)
    assert s3.bucket == s3_server.bucket
    assert s3.endpoint_url == s3_server.endpoint_url
    assert s3.public_base_url == "https://cdn.example.com"

    with pytest.raises(ValueError, match="STORAGE"):
        make_storage(Settings(storage="ftp", data_dir=tmp_path))
    with pytest.raises(ValueError, match="S3_BUCKET"):
        make_storage(Settings(storage="s3", s3_bucket=None))


def test_server_env(s3_server, s3_faults):
    env = s3_server.env()
    assert env["STORAGE"] == "s3"
    assert env["S3_ENDPOINT_URL"] == s3_server.endpoint_url
    assert env["S3_REGION"] == "us-east-1"
    assert {"S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= env.keys()
    assert s3_faults.env()["S3_ENDPOINT_URL"] == s3_faults.endpoint_url
    assert s3_faults.endpoint_url != s3_server.endpoint_url


# -- S3 faults through the proxy ---------------------------------------------------------


async def test_s3_503s_are_retried_then_succeed(s3_faults: S3FaultProxy, prefix):
    store = s3_faults.storage(max_attempts=3)
    key = f"{prefix}/retry.png"
    s3_faults.fail_next(2)
    await store.put_bytes(key, b"made it", "image/png")
    assert s3_faults.faults_served == 2
    assert s3_faults.requests == 3
    s3_faults.fail_next(2)
    assert await store.get_bytes(key) == b"made it"
    assert s3_faults.faults_served == 4
    store.close()


async def test_s3_persistent_503_is_transient_error(s3_faults: S3FaultProxy, prefix, tmp_path):
    store = s3_faults.storage(max_attempts=3)
    src = tmp_path / "small.mp4"
    src.write_bytes(b"video")
    s3_faults.fail_always()
    with pytest.raises(TransientStorageError):
        await store.put_bytes(f"{prefix}/a.png", b"x", "image/png")
    assert s3_faults.requests == 3  # botocore's three attempts, then the error
    with pytest.raises(TransientStorageError):
        await store.get_bytes(f"{prefix}/a.png")
    with pytest.raises(TransientStorageError):
        await store.put_file(f"{prefix}/a.mp4", src, "video/mp4")
    with pytest.raises(TransientStorageError):
        await store.size(f"{prefix}/a.png")
    with pytest.raises(TransientStorageError):
        async for _ in store.iter_bytes(f"{prefix}/a.png"):
            pass
    store.close()


async def test_s3_throttling_is_transient(s3_faults: S3FaultProxy, prefix):
    store = s3_faults.storage(max_attempts=1)
    s3_faults.fail_next(1, status=429, code="TooManyRequests")
    with pytest.raises(TransientStorageError):
        await store.put_bytes(f"{prefix}/t.png", b"x", "image/png")


async def test_s3_access_denied_is_permanent(s3_faults: S3FaultProxy, prefix):
    store = s3_faults.storage(max_attempts=3)
    s3_faults.fail_next(1, status=403, code="AccessDenied")
    with pytest.raises(StorageError) as info:
        await store.put_bytes(f"{prefix}/d.png", b"x", "image/png")
    assert not isinstance(info.value, TransientStorageError)
    assert s3_faults.requests == 1  # not retried
    store.close()


async def test_s3_unknown_key_through_proxy(s3_faults: S3FaultProxy, prefix):
    store = s3_faults.storage()
    with pytest.raises(FileNotFoundError):
        await store.get_bytes(f"{prefix}/unknown.png")
    with pytest.raises(FileNotFoundError):
        async for _ in store.iter_bytes(f"{prefix}/unknown.png"):
            pass
    assert not await store.exists(f"{prefix}/unknown.png")
    store.close()


async def test_s3_slow_answer_times_out_and_is_retried(s3_faults: S3FaultProxy, prefix):
    store = s3_faults.storage(read_timeout=0.5, max_attempts=3)
    key = f"{prefix}/slow.png"
    await store.put_bytes(key, b"slow", "image/png")
    s3_faults.reset()
    s3_faults.delay_next(1, 1.5)
    assert await store.get_bytes(key) == b"slow"
    assert s3_faults.delays_served == 1
    assert s3_faults.requests == 2
    store.close()


async def test_s3_persistent_timeouts_are_transient(s3_faults: S3FaultProxy, prefix):
    store = s3_faults.storage(read_timeout=0.3, max_attempts=2)
    s3_faults.delay_next(2, 1.0)
    with pytest.raises(TransientStorageError):
        await store.get_bytes(f"{prefix}/never.png")
    assert s3_faults.delays_served == 2
    store.close()


async def test_s3_connection_refused_is_transient(s3_server, prefix):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = s3_server.storage(
        endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1, connect_timeout=1
    )
    with pytest.raises(TransientStorageError):
        await store.get_bytes(f"{prefix}/x.png")
    with pytest.raises(TransientStorageError):
        await store.put_bytes(f"{prefix}/x.png", b"x", "image/png")
    store.close()
