"""An object streamed into S3 part by part (`S3Storage.put_stream`).

Chunks are copied into a part buffer until it is full; the part is then uploaded from a
worker thread while the next one fills, so a download and its upload overlap and no file
sits between them. Memory is bounded for the whole process: a part takes one of
`PartBuffers` before it starts filling and gives it back when its upload ends, and a
stream that finds none free stops reading (its download waits in the socket). The object
appears only through
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


_NONE = bytearray()  # what a stream holds between two part buffers


class PartBuffers:
    """At most `n` part buffers of `size` bytes, reused from part to part: filling a fixed
    buffer (instead of joining a part's chunks) keeps the memory at n × size with nothing
    left to fragment the heap, and the buffer itself is the body of UploadPart. Made for
    the running event loop when first used (an S3Storage may be built before the loop, and
    tests run several loops); all buffers are dropped whenever none is in use."""

    def __init__(self, n: int, size: int) -> None:
        self.n, self.size = n, size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem = asyncio.Semaphore(n)
        self._free: list[bytearray] = []
        self._out = 0

    def _current(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._sem = loop, asyncio.Semaphore(self.n)
            self._free, self._out = [], 0
        return self._sem

    async def take(self) -> bytearray:
        await self._current().acquire()
        self._out += 1
        return self._free.pop() if self._free else bytearray(self.size)

    def give(self, buffer: bytearray) -> None:
        """Back from a part (on the loop). A buffer cut to a last part's length is dropped."""
        sem = self._current()
        self._out -= 1
        if self._out == 0:
            self._free.clear()
        elif len(buffer) == self.size:
            self._free.append(buffer)
        sem.release()


class StreamUpload:
    """One put_stream: `run(chunks)` returns the object's size once it is stored."""

    def __init__(self, client: Any, bucket: str, key: str, content_type: str, *,
                 buffers: PartBuffers, pool: concurrent.futures.Executor,
                 copy_to: Path | None, map_error: Callable[[BaseException], BaseException]
                 ) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.content_type = content_type
        self.buffers, self.pool = buffers, pool
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
            await self._end(abort=True)
            raise
        finally:
            await self._end(abort=False)

    async def _send(self, chunks: AsyncIterable[bytes]) -> int:
        size = self.buffers.size
        offset = 0  # bytes handed to parts so far
        buffer = await self.buffers.take()
        holding, filled = True, 0
        try:
            async for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    n = min(len(view), size - filled)
                    buffer[filled:filled + n] = view[:n]
                    filled, view = filled + n, view[n:]
                    if filled < size:
                        continue
                    if self.upload_id is None:
                        self.upload_id = await self._call(self._create)
                    self._submit(buffer, offset)  # the part owns the buffer now
                    holding, offset, filled = False, offset + size, 0
                    buffer = _NONE  # not kept alive by this frame while waiting
                    buffer = await self.buffers.take()  # waits while every buffer is busy
                    holding = True
                    self._raise_failed_part()  # stop reading once a part has failed
            del buffer[filled:]  # in place: the last part's length
            if self.upload_id is None:  # smaller than a part: one PUT
                await self._call(self._put_whole, buffer)
                return filled
            if filled:
                self._submit(buffer, offset)
                holding = False
            buffer = _NONE
        finally:
            if holding:
                self.buffers.give(buffer)
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

    def _submit(self, buffer: bytearray, offset: int) -> None:
        number = len(self.parts) + 1
        loop = asyncio.get_running_loop()
        self.parts.append(self.pool.submit(self._part, number, buffer, offset, loop))

    def _part(self, number: int, buffer: bytearray, offset: int,
              loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
        try:
            self._copy(buffer, offset)
            r = self.client.upload_part(Bucket=self.bucket, Key=self.key,
                                        UploadId=self.upload_id, PartNumber=number,
                                        Body=buffer)
            return {"PartNumber": number, "ETag": r["ETag"]}
        finally:
            # Given back from here, not from a callback on the future: nothing that lives
            # as long as this upload may keep a buffer (a cycle kept 300 MB until a GC).
            loop.call_soon_threadsafe(self.buffers.give, buffer)

    def _put_whole(self, buffer: bytearray) -> None:
        self._copy(buffer, 0)
        self.client.put_object(Bucket=self.bucket, Key=self.key, Body=buffer,
                               ContentType=self.content_type)

    def _complete(self, parts: list[dict[str, Any]]) -> None:
        self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.key,
                                              UploadId=self.upload_id,
                                              MultipartUpload={"Parts": parts})

    def _copy(self, data: bytearray, offset: int) -> None:
        if self._fd is None:
            return
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written

    async def _end(self, *, abort: bool) -> None:
        """After the parts still uploading are done (S3 may keep a part that was uploading
        during an abort, and they write to the copy): abort the upload if asked, close the
        copy. Runs to its end in a thread even if this task is cancelled meanwhile."""
        parts, fd = list(self.parts), self._fd
        upload_id = self.upload_id if abort else None
        self._fd = None
        if upload_id is None and fd is None:
            return

        def end() -> None:
            concurrent.futures.wait(parts)
            if fd is not None:
                os.close(fd)
            if upload_id is None:
                return
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key,
                                                   UploadId=upload_id)
            except Exception as exc:  # a bucket lifecycle rule removes what is left
                log.warning("storage.abort_failed", key=self.key, error=str(exc)[:300])

        # A cancellation here still propagates; the shielded thread finishes the work.
        await asyncio.shield(asyncio.to_thread(end))
