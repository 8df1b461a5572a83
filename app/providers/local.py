"""A video provider that renders real MP4s on this machine with ffmpeg.

It is the default when no FAL_KEY is set. It behaves like fal's queue, so the job driver
cannot tell the difference: `submit` returns a request id at once, at most `concurrency`
renders run together and the others wait with a fal-style `queue_position` (the number of
requests ahead, so 0 means next), a running render reports "Rendering N%" log lines, and a
failed render reports "completed" and raises ProviderError from `stream_result`.

The video itself is made by app/providers/local_render.py.

A render in progress lives in this process (`runs_here`): the job driver keeps the job's
lease while it renders, so no other process asks about it. When this process stops or dies,
the next driver to take the job finds the id unknown (`RenderLost`) and submits the same
request again under the same id; a render is deterministic, so the video is the same. A
finished render is a file named after its id, so a restart on the same machine finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import BinaryIO

import httpx

from app.providers.base import (
    ProviderError,
    ProviderStatus,
    RenderLost,
    SubmitRequest,
    TransientProviderError,
)
from app.providers.local_render import (
    FPS,
    MAX_IMAGE_BYTES,
    Render,
    Renderer,
    frame_size,
    parse_duration,
)

log = logging.getLogger(__name__)

LOST_MESSAGE = "The local render is not running in this process"
CANCELED_MESSAGE = "The render was canceled"

COPY_CHUNK = 1024 * 1024
_RENDER_ID = re.compile(r"[0-9a-f]{32}")


class LocalProvider:
    """Renders videos with ffmpeg, `concurrency` at a time, behind a fal-like queue."""

    name = "local"
    runs_here = True
    status_interval = 1.0  # status checks are free here: notice finished renders at once

    def __init__(
        self,
        work_dir: Path,
        concurrency: int = 2,
        speed: float = 1.0,
        *,
        result_ttl: float = 3600.0,
        max_image_bytes: int = MAX_IMAGE_BYTES,
        render_timeout: float = 300.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        """`speed` scales the rendered length (0.2 renders a fifth of the requested
        seconds; for tests). Finished videos are kept `result_ttl` seconds for fetching."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.concurrency = concurrency
        self.speed = speed
        self.result_ttl = result_ttl
        self.render_timeout = render_timeout
        self._renderer = Renderer(self.work_dir, max_image_bytes, http_client)
        self._renders: dict[str, Render] = {}
        self._waiting: deque[str] = deque()
        self._running: set[str] = set()
        self._closed = False
        self._remove_stale_files()

    # --- the VideoProvider interface -------------------------------------------------

    async def submit(self, request: SubmitRequest, request_id: str | None = None) -> str:
        if self._closed:
            raise TransientProviderError("The local renderer is shutting down")
        self._prune()
        if request_id is not None and request_id in self._renders:
            return request_id  # already rendering (or rendered) here
        width, height = frame_size(request.parameters.get("aspect_ratio"))
        duration = parse_duration(request.parameters.get("duration")) * self.speed
        render = Render(
            id=request_id or uuid.uuid4().hex,
            request=request,
            duration=max(1 / FPS, duration),
            width=width,
            height=height,
        )
        render.logs.append("Queued for rendering")
        self._renders[render.id] = render
        self._waiting.append(render.id)
        self._dispatch()
        return render.id

    async def status(self, endpoint: str, request_id: str) -> ProviderStatus:
        render = self._get(request_id)
        if render.state == "queued":
            return ProviderStatus(
                state="queued",
                queue_position=self._waiting.index(render.id),
                logs=list(render.logs),
            )
        return ProviderStatus(state=render.state, logs=list(render.logs))

    async def stream_result(self, endpoint: str, request_id: str, max_bytes: int
                            ) -> AsyncGenerator[bytes, None]:
        output = self._finished(request_id)
        reader = await asyncio.to_thread(_open_capped, output, max_bytes)
        try:
            read = 0
            while chunk := await asyncio.to_thread(reader.read, COPY_CHUNK):
                read += len(chunk)
                if read > max_bytes:  # the file grew after the check
                    raise ProviderError(f"The video is over the {max_bytes}-byte limit")
                yield chunk
        finally:
            reader.close()

    def _finished(self, request_id: str) -> Path:
        """The file of a finished render, or the error that says why there is none."""
        render = self._get(request_id)
        if render.state != "completed":
            raise TransientProviderError("The local render has not finished yet")
        if render.error is not None:
            raise ProviderError(render.error)
        if render.output is None or not render.output.exists():
            raise RenderLost(LOST_MESSAGE)
        return render.output

    async def cancel(self, endpoint: str, request_id: str) -> None:
        render = self._renders.get(request_id)
        if render is None or render.state == "completed":
            return
        if render.state == "queued":
            self._waiting.remove(render.id)
            self._finish(render, CANCELED_MESSAGE)
            return
        if render.task is not None:
            render.task.cancel()
            # asyncio.wait does not re-raise the task's CancelledError, so a cancellation
            # of this caller itself still propagates.
            await asyncio.wait([render.task])

    async def aclose(self) -> None:
        self._closed = True
        while self._waiting:
            self._finish(self._renders[self._waiting.popleft()], "The local renderer stopped")
        tasks = [r.task for r in self._renders.values() if r.task is not None and not r.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await self._renderer.aclose()

    # --- the queue ---------------------------------------------------------------------

    def _get(self, request_id: str) -> Render:
        render = self._renders.get(request_id)
        if render is None:
            output = self._path(request_id, ".mp4") if _RENDER_ID.fullmatch(request_id) else None
            if output is None or not output.exists():
                raise RenderLost(LOST_MESSAGE)
            # Finished before this process started (a restart): the file is the result.
            render = Render(id=request_id, request=None, duration=0, width=0, height=0,
                             state="completed", output=output, finished_at=time.monotonic())
            self._renders[request_id] = render
        return render

    def _dispatch(self) -> None:
        while self._waiting and len(self._running) < self.concurrency and not self._closed:
            render = self._renders[self._waiting.popleft()]
            render.state = "processing"
            self._running.add(render.id)
            render.task = asyncio.create_task(self._run(render), name=f"render-{render.id}")

    def _finish(self, render: Render, error: str | None) -> None:
        render.error = error
        render.state = "completed"
        render.finished_at = time.monotonic()
        render.request = None

    async def _run(self, render: Render) -> None:
        error: str | None = None
        try:
            async with asyncio.timeout(self.render_timeout):
                await self._renderer.render(render)
        except asyncio.CancelledError:
            error = CANCELED_MESSAGE
            raise
        except ProviderError as exc:
            error = str(exc)
        except TimeoutError:
            error = f"The local render took longer than {self.render_timeout:g} s"
        except Exception as exc:
            log.exception("local render %s failed", render.id)
            error = f"The local render failed: {exc}"
        finally:
            for suffix in (".bg.png", ".caption.png", ".part"):
                self._path(render.id, suffix).unlink(missing_ok=True)
            if error is None:
                render.output = self._path(render.id, ".mp4")
                render.logs.append("Render finished")
            else:
                render.logs.append(error)
            self._finish(render, error)
            self._running.discard(render.id)
            self._dispatch()

    def _prune(self) -> None:
        """Forget renders finished more than result_ttl ago and delete their files."""
        now = time.monotonic()
        for render in list(self._renders.values()):
            if render.finished_at is not None and now - render.finished_at > self.result_ttl:
                del self._renders[render.id]
                if render.output is not None:
                    render.output.unlink(missing_ok=True)

    def _remove_stale_files(self) -> None:
        """Delete files another run of this process left behind (they cannot be fetched)."""
        cutoff = time.time() - self.result_ttl
        for path in self.work_dir.iterdir():
            with contextlib.suppress(OSError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()

    def _path(self, render_id: str, suffix: str) -> Path:
        return self._renderer.path(render_id, suffix)


def _open_capped(source: Path, max_bytes: int) -> BinaryIO:
    reader = source.open("rb")
    size = os.fstat(reader.fileno()).st_size
    if size > max_bytes:
        reader.close()
        raise ProviderError(f"The video is {size} bytes, over the {max_bytes}-byte limit")
    return reader
