"""An object streamed into S3 part by part (`S3Storage.put_stream`).

Chunks are gathered until a part is full; the part is then uploaded from a worker thread
while the next one fills, so a download and its upload overlap and no file sits between
them. Memory is bounded for the whole process: a part takes one of `PartSlots` before it
starts filling and gives it back when its upload ends, and a stream that finds no free
slot stops reading (its download waits in the socket). The object appears only through
CompleteMultipartUpload (or one PUT for a result smaller than a part), after the last
chunk; any error or cancellation aborts the upload, so nothing partial is ever stored.
Kept apart from s3.py so that module stays the only one importing boto3: this one only
calls the client it is given."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import AsyncIterable, Callable
from pathlib import Path
from typing import Any

from app.observability.logging import get_logger

log = get_logger("reelforge.storage")


class PartSlots:
    """A semaphore of parts in memory, made for the running event loop when first used (an
    S3Storage may be built before the loop, and tests run several loops)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem = asyncio.Semaphore(n)

    def _current(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._sem = loop, asyncio.Semaphore(self.n)
        return self._sem

    async def acquire(self) -> None:
        await self._current().acquire()

    def release(self) -> None:
        self._current().release()


class StreamUpload:
    """One put_stream: `run(chunks)` returns the object's size once it is stored."""

    def __init__(self, client: Any, bucket: str, key: str, content_type: str, *,
                 part_size: int, slots: PartSlots, pool: concurrent.futures.Executor,
                 copy_to: Path | None, map_error: Callable[[BaseException], BaseException]
                 ) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.content_type = content_type
        self.part_size = part_size
        self.slots, self.pool = slots, pool
        self.copy_to = copy_to
        self.map_error = map_error
        self.upload_id: str | None = None
        self.parts: list[concurrent.futures.Future[dict[str, Any]]] = []
        self._fd: int | None = None

    async def run(self, chunks: AsyncIterable[bytes]) -> int:
        try:
            if self.copy_to is not None:
                self._fd = await asyncio.to_thread(
                    os.open, self.copy_to, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            return await self._send(chunks)
        except BaseException:
            await self._abort()
            raise
        finally:
            if self._fd is not None:
                os.close(self._fd)

    async def _send(self, chunks: AsyncIterable[bytes]) -> int:
        offset = 0  # bytes handed to parts so far
        pieces: list[bytes] = []
        filled = 0
        await self.slots.acquire()  # the slot of the part now filling
        holding = True
        try:
            async for chunk in chunks:
                pieces.append(chunk)
                filled += len(chunk)
                if filled < self.part_size:
                    continue
                if self.upload_id is None:
                    self.upload_id = await self._call(self._create)
                self._submit(len(self.parts) + 1, pieces, offset)  # the part owns the slot
                holding = False
                offset, pieces, filled = offset + filled, [], 0
                await self.slots.acquire()
                holding = True
                self._raise_failed_part()  # stop reading once a part has failed
            if self.upload_id is None:  # smaller than a part: one PUT
                await self._call(self._put_whole, pieces)
                return filled
            if filled:
                self._submit(len(self.parts) + 1, pieces, offset)
                holding = False
        finally:
            if holding:
                self.slots.release()
        done = [await self._wait(f) for f in self.parts]
        await self._call(self._complete, done)
        return offset + filled

    def _raise_failed_part(self) -> None:
        for f in self.parts:
            exc = f.exception() if f.done() else None
            if exc is not None:
                raise self.map_error(exc) from exc

    # -- in worker threads ---------------------------------------------------------------

    async def _wait(self, future: concurrent.futures.Future[Any]) -> Any:
        """A worker's result, its error mapped to the storage interface's (errors of the
        chunks' source, e.g. a provider's, pass through unchanged)."""
        try:
            return await asyncio.wrap_future(future)
        except Exception as exc:
            raise self.map_error(exc) from exc

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self._wait(self.pool.submit(fn, *args))

    def _create(self) -> str:
        r = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key,
                                                ContentType=self.content_type)
        return str(r["UploadId"])

    def _submit(self, number: int, pieces: list[bytes], offset: int) -> None:
        future = self.pool.submit(self._part, number, pieces, offset)
        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda _f: loop.call_soon_threadsafe(self.slots.release))
        self.parts.append(future)

    def _part(self, number: int, pieces: list[bytes], offset: int) -> dict[str, Any]:
        data = b"".join(pieces)  # joined here, not on the event loop
        pieces.clear()
        self._copy(data, offset)
        r = self.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                    PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": r["ETag"]}

    def _put_whole(self, pieces: list[bytes]) -> None:
        data = b"".join(pieces)
        self._copy(data, 0)
        self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data,
                               ContentType=self.content_type)

    def _complete(self, parts: list[dict[str, Any]]) -> None:
        self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.key,
                                              UploadId=self.upload_id,
                                              MultipartUpload={"Parts": parts})

    def _copy(self, data: bytes, offset: int) -> None:
        if self._fd is None:
            return
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written

    async def _abort(self) -> None:
        """Wait for the parts still uploading, then abort (S3 may keep a part that was
        uploading during the abort). Runs to its end in a thread even if cancelled."""
        if self.upload_id is None and not self.parts:
            return
        upload_id, parts = self.upload_id, list(self.parts)

        def abort() -> None:
            concurrent.futures.wait(parts)
            if upload_id is None:
                return
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key,
                                                   UploadId=upload_id)
            except Exception as exc:  # a bucket lifecycle rule removes what is left
                log.warning("storage.abort_failed", key=self.key, error=str(exc)[:300])

        # A cancellation here still propagates; the shielded thread finishes the abort.
        await asyncio.shield(asyncio.to_thread(abort))
