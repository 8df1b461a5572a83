"""Library files in an S3-compatible bucket (Cloudflare R2, AWS S3, MinIO).

The only module that imports boto3/botocore. Every blocking call runs in a worker thread
(`asyncio.to_thread`); boto3 clients are thread-safe. botocore errors are mapped to the storage
interface's errors: 5xx, throttling, timeouts and connection errors become
`TransientStorageError` (after botocore's own standard-mode retries), a missing object becomes
`FileNotFoundError` on reads, anything else `StorageError`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    ResponseStreamingError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from app.storage.base import StorageError, TransientStorageError
from app.storage.keys import validate_key
from app.storage.s3_stream import PartBuffers, StreamUpload

T = TypeVar("T")

MB = 1024 * 1024

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "InternalError",
        "PriorRequestNotComplete",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)


class S3Storage:
    """Objects at `key` in one bucket."""

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        public_base_url: str | None = None,
        *,
        max_attempts: int = 3,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        multipart_threshold: int = 8 * MB,
        multipart_chunksize: int = 8 * MB,
        max_concurrency: int = 4,
        stream_parts: int = 6,
    ) -> None:
        """`stream_parts`: parts of `multipart_chunksize` that put_stream holds in memory at
        once, across all its streams (6 × 8 MB); also the threads that upload them."""
        if not bucket:
            raise ValueError("S3_BUCKET is required when STORAGE=s3")
        self.bucket = bucket
        self.endpoint_url = endpoint_url or None
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        config = Config(
            signature_version="s3v4",
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # R2 and MinIO want path-style addressing (no bucket-name subdomains).
            s3={"addressing_style": "path"} if self.endpoint_url else {},
            max_pool_connections=max(10, max_concurrency * 2, stream_parts + 8),
        )
        # A custom endpoint without a region (R2, MinIO) still needs one to sign with.
        self.region = region or ("us-east-1" if self.endpoint_url else None)
        session = boto3.session.Session()
        self._client = session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            config=config,
        )
        # Bounded memory: at most max_concurrency chunks of multipart_chunksize in flight.
        self._transfer_config = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
            max_io_queue=max_concurrency * 2,
            use_threads=True,
        )
        self._part_buffers = PartBuffers(stream_parts, multipart_chunksize)
        self._part_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=stream_parts + 4, thread_name_prefix="s3-parts")

    # -- plumbing ------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except Exception as exc:  # mapped to the interface's errors
            raise _map_error(exc) from exc

    # -- writes --------------------------------------------------------------------------

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        validate_key(key)
        await self._call(
            self._client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
        )

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Multipart upload streamed from disk (parts of `multipart_chunksize`)."""
        validate_key(key)
        path = Path(path)
        if not await asyncio.to_thread(path.is_file):
            raise FileNotFoundError(path)
        await self._call(
            self._client.upload_file,
            str(path),
            self.bucket,
            key,
            ExtraArgs={"ContentType": content_type},
            Config=self._transfer_config,
        )

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], content_type: str,
                         *, copy_to: Path | None = None) -> int:
        """Multipart upload of what `chunks` yields, each part uploaded while the next is
        read (app/storage/s3_stream.py); nothing is stored unless the stream ends normally.
        Errors of S3 are mapped as everywhere here; those of `chunks` pass through."""
        validate_key(key)
        upload = StreamUpload(self._client, self.bucket, key, content_type,
                              buffers=self._part_buffers, pool=self._part_pool,
                              copy_to=copy_to, map_error=_map_error)
        return await upload.run(chunks)

    async def delete(self, key: str) -> None:
        validate_key(key)
        try:
            await self._call(self._client.delete_object, Bucket=self.bucket, Key=key)
        except FileNotFoundError:
            return

    # -- reads ---------------------------------------------------------------------------

    async def get_bytes(self, key: str) -> bytes:
        validate_key(key)

        def fetch() -> bytes:
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                return body.read()
            finally:
                body.close()

        return await self._call(fetch)

    async def iter_bytes(self, key: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        validate_key(key)
        response = await self._call(self._client.get_object, Bucket=self.bucket, Key=key)
        body = response["Body"]
        try:
            while chunk := await self._call(body.read, chunk_size):
                yield chunk
        finally:
            body.close()

    async def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to `length` bytes from `start` (one ranged GET; fewer at the object's end)."""
        validate_key(key)

        def fetch() -> bytes:
            body = self._client.get_object(Bucket=self.bucket, Key=key,
                                           Range=f"bytes={start}-{start + length - 1}")["Body"]
            try:
                return body.read()
            finally:
                body.close()

        return await self._call(fetch)

    async def download_file(self, key: str, path: Path) -> None:
        """Stream an object to a file on disk (multipart, like put_file)."""
        validate_key(key)
        await self._call(self._client.download_file, self.bucket, key, str(path),
                         Config=self._transfer_config)

    async def list_objects(self, prefix: str, delimiter: str | None = None
                           ) -> list[tuple[str, int]]:
        """(key, size) of every object under `prefix`; with `delimiter`, not below the next
        one (no "subfolders")."""

        def collect() -> list[tuple[str, int]]:
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if delimiter:
                args["Delimiter"] = delimiter
            found = []
            for page in self._client.get_paginator("list_objects_v2").paginate(**args):
                found += [(o["Key"], int(o["Size"])) for o in page.get("Contents", [])]
            return found

        return await self._call(collect)

    async def exists(self, key: str) -> bool:
        return await self.size(key) is not None

    async def size(self, key: str) -> int | None:
        validate_key(key)
        try:
            head = await self._call(self._client.head_object, Bucket=self.bucket, Key=key)
        except FileNotFoundError:
            return None
        return int(head["ContentLength"])

    # -- URLs ----------------------------------------------------------------------------

    def _presign(self, key: str, expires: int) -> str:
        try:
            return self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=int(expires),
            )
        except Exception as exc:
            raise _map_error(exc) from exc

    async def url(self, key: str, expires: int = 3600) -> str:
        validate_key(key)
        if self.public_base_url:
            return f"{self.public_base_url}/{key}"
        # Presigning is local, but resolving credentials may touch the network: use a thread.
        return await asyncio.to_thread(self._presign, key, expires)

    def external_url(self, key: str, expires: int = 3600) -> str | None:
        validate_key(key)
        if self.public_base_url:
            return f"{self.public_base_url}/{key}"
        return self._presign(key, expires)

    # -- setup ---------------------------------------------------------------------------

    async def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (for development and tests)."""

        def ensure() -> None:
            try:
                self._client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if _error_code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                    raise
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            if self.region and self.region not in ("us-east-1", "auto"):
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            try:
                self._client.create_bucket(**kwargs)
            except ClientError as exc:
                if _error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

        await self._call(ensure)

    def close(self) -> None:
        self._part_pool.shutdown(wait=False)
        self._client.close()


# -- error mapping -----------------------------------------------------------------------


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _root_cause(exc: BaseException) -> BaseException:
    """boto3's upload_file wraps ClientError in S3UploadFailedError: find the botocore error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ClientError | BotoCoreError):
            return current
        current = current.__cause__ or current.__context__
    return exc


def _map_error(exc: BaseException) -> BaseException:
    if isinstance(exc, StorageError | FileNotFoundError | ValueError):
        return exc
    cause = _root_cause(exc)
    if isinstance(cause, ClientError):
        code, status = _error_code(cause), _status(cause)
        if code in _NOT_FOUND_CODES or (status == 404 and not code):
            return FileNotFoundError(f"no such object ({code or status}): {cause}")
        if status >= 500 or status == 429 or code in _TRANSIENT_CODES:
            return TransientStorageError(f"S3 {code or status}: {cause}")
        return StorageError(f"S3 {code or status}: {cause}")
    if isinstance(
        cause,
        BotoConnectionError | HTTPClientError | IncompleteReadError | ResponseStreamingError,
    ):
        return TransientStorageError(f"S3 connection problem: {cause}")
    if isinstance(cause, BotoCoreError):
        return StorageError(f"S3: {cause}")
    if isinstance(cause, ConnectionError | TimeoutError):
        return TransientStorageError(f"S3 connection problem: {cause}")
    return StorageError(f"S3: {type(exc).__name__}: {exc}")
