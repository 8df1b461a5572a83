"""The local ffmpeg provider renders real, browser-playable MP4s behind a fal-like queue."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import io
import os
import re
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import imageio_ffmpeg
import pytest
from PIL import Image, ImageDraw

from app.providers.base import (
    ProviderError,
    ProviderStatus,
    RenderLost,
    SubmitRequest,
    TransientProviderError,
)
from app.providers.local import LOST_MESSAGE, LocalProvider

ENDPOINT = "fal-ai/kling-video/v2.1/standard/image-to-video"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


# --- helpers -------------------------------------------------------------------------------


def png_bytes(size: tuple[int, int] = (800, 600), color=(40, 90, 160), stripes=True) -> bytes:
    image = Image.new("RGB", size, color)
    if stripes:
        draw = ImageDraw.Draw(image)
        for x in range(0, size[0], 80):
            draw.rectangle((x, 0, x + 16, size[1]), fill=(220, 120, 40))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def data_uri(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def request(image_url: str, caption: str = "", **parameters) -> SubmitRequest:
    return SubmitRequest(
        endpoint=ENDPOINT,
        prompt="a slow push-in",
        image_url=image_url,
        parameters=parameters,
        caption=caption,
    )


def probe(path: Path) -> dict:
    """What `ffmpeg -i` says about the file (imageio-ffmpeg ships no ffprobe)."""
    result = subprocess.run(
        [FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True, check=False
    )
    info = result.stderr
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", info)
    video = re.search(r"Stream #\S+.*?: Video: (\w+).*?, (\w+)(?:\([^)]*\))?, (\d+)x(\d+)", info)
    assert duration and video, info
    hours, minutes, seconds = duration.groups()
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    return {
        "duration": int(hours) * 3600 + int(minutes) * 60 + float(seconds),
        "codec": video.group(1),
        "pix_fmt": video.group(2),
        "size": (int(video.group(3)), int(video.group(4))),
        "frames": frames,
    }


def top_level_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types in file order ("moov" before "mdat" = faststart)."""
    data = path.read_bytes()
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        boxes.append(kind)
        if size < 8:
            break
        offset += size
    return boxes


def first_frame(path: Path) -> tuple[tuple[int, int], bytes]:
    frames = imageio_ffmpeg.read_frames(str(path))
    meta = next(frames)
    frame = next(frames)
    frames.close()
    return meta["size"], frame


def ffmpeg_running_for(request_id: str) -> bool:
    """Whether an ffmpeg process writing this request's files exists."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"ffmpeg" in cmdline and request_id.encode() in cmdline:
            return True
    return False


async def wait_until_completed(
    provider: LocalProvider, request_id: str, timeout: float = 30.0
) -> list[ProviderStatus]:
    seen: list[ProviderStatus] = []
    deadline = time.monotonic() + timeout
    while True:
        status = await provider.status(ENDPOINT, request_id)
        seen.append(status)
        if status.state == "completed":
            return seen
        assert time.monotonic() < deadline, f"render {request_id} never finished: {status}"
        await asyncio.sleep(0.02)


async def read_result(provider: LocalProvider, request_id: str, max_bytes: int = 10_000_000,
                      *, dest: Path | None = None, got: list[bytes] | None = None) -> bytes:
    """The video through stream_result, as the driver reads it; also written to `dest` when
    given (for ffmpeg). `got` keeps the chunks that arrived when the stream raises."""
    got = [] if got is None else got
    async with aclosing(provider.stream_result(ENDPOINT, request_id, max_bytes)) as chunks:
        async for chunk in chunks:
            got.append(chunk)
    video = b"".join(got)
    if dest is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(video)
    return video


async def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.02)


@pytest.fixture
async def make_provider(tmp_path: Path) -> AsyncIterator:
    made: list[LocalProvider] = []

    def make(**kwargs) -> LocalProvider:
        kwargs.setdefault("concurrency", 2)
        provider = LocalProvider(tmp_path / "renders", **kwargs)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


@pytest.fixture(scope="module")
def image_server() -> Iterator[str]:
    """A plain HTTP server for start images given by URL."""
    png = png_bytes((640, 480))
    blob = os.urandom(120_000)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/start.png":
                self._send(png, length=True)
            elif self.path == "/big.png":
                self._send(blob, length=True)
            elif self.path == "/big-unsized.png":
                self._send(blob, length=False)
            else:
                self.send_error(404)

        def _send(self, body: bytes, length: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            if length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# --- rendering -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "speed", "size", "seconds"),
    [
        ({"duration": "2", "aspect_ratio": "16:9"}, 1.0, (640, 360), 2.0),
        ({"duration": 4, "aspect_ratio": "9:16"}, 0.25, (360, 640), 1.0),
        ({"duration": 0, "aspect_ratio": "1:1"}, 1.0, (480, 480), 1.0),  # clamped up to 1 s
        ({}, 0.2, (640, 360), 1.0),  # defaults: 5 s at 16:9
    ],
    ids=["16x9-2s", "9x16-speed", "1x1-clamped", "defaults"],
)
async def test_render_is_a_browser_playable_mp4(
    make_provider, tmp_path: Path, parameters: dict, speed: float, size, seconds: float
) -> None:
    provider = make_provider(speed=speed)
    request_id = await provider.submit(
        request(data_uri(png_bytes()), caption="Acme rocket shoes", **parameters)
    )
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)

    statuses = await wait_until_completed(provider, request_id)
    dest = tmp_path / "out" / "video.mp4"
    video = await read_result(provider, request_id, max_bytes=50_000_000, dest=dest)

    assert statuses[-1].state == "completed"
    # all of the render, and an H.264 MP4 (probed below)
    assert len(video) == (provider.work_dir / f"{request_id}.mp4").stat().st_size > 1000
    info = probe(dest)
    assert info["codec"] == "h264"
    assert info["pix_fmt"] == "yuv420p"
    assert info["size"] == size
    assert abs(info["duration"] - seconds) <= 0.5
    assert info["frames"] == round(seconds * 24)
    boxes = top_level_boxes(dest)
    assert boxes.index("moov") < boxes.index("mdat")  # +faststart: playable while loading


async def test_caption_is_drawn_on_the_video(make_provider, tmp_path: Path) -> None:
    provider = make_provider()
    dark = data_uri(png_bytes((640, 360), color=(20, 20, 20), stripes=False))
    with_caption = await provider.submit(request(dark, caption="HELLO WORLD", duration=1))
    without_caption = await provider.submit(request(dark, duration=1))
    for request_id in (with_caption, without_caption):
        await wait_until_completed(provider, request_id)
        await read_result(provider, request_id, dest=tmp_path / request_id)

    (width, height), frame = first_frame(tmp_path / with_caption)
    row = width * 3

    def bright_rows(pixels: bytes) -> list[int]:
        return [y for y in range(height) if max(pixels[y * row : (y + 1) * row]) > 200]

    rows = bright_rows(frame)
    assert rows, "no caption text found"
    assert min(rows) > height // 2, "the caption belongs at the bottom"
    assert bright_rows(first_frame(tmp_path / without_caption)[1]) == []


async def test_start_image_from_an_http_url(make_provider, image_server: str) -> None:
    provider = make_provider()
    request_id = await provider.submit(request(f"{image_server}/start.png", duration=1))
    await wait_until_completed(provider, request_id)
    dest = provider.work_dir.parent / "from-url.mp4"
    await read_result(provider, request_id, dest=dest)
    assert probe(dest)["size"] == (640, 360)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing.png", "HTTP 404"),
        ("/big.png", "larger than"),
        ("/big-unsized.png", "larger than"),
    ],
)
async def test_start_image_url_failures(
    make_provider, image_server: str, path: str, message: str
) -> None:
    provider = make_provider(max_image_bytes=100_000)
    request_id = await provider.submit(request(f"{image_server}{path}", duration=1))
    await wait_until_completed(provider, request_id)
    with pytest.raises(ProviderError, match=message) as raised:
        await read_result(provider, request_id)
    assert not isinstance(raised.value, TransientProviderError)


# --- the queue -----------------------------------------------------------------------------


async def test_jobs_beyond_concurrency_wait_with_queue_positions(make_provider) -> None:
    provider = make_provider(concurrency=1)
    image = data_uri(png_bytes())
    first, second, third = [await provider.submit(request(image, duration=1)) for _ in range(3)]

    assert (await provider.status(ENDPOINT, first)).state == "processing"
    second_status = await provider.status(ENDPOINT, second)
    third_status = await provider.status(ENDPOINT, third)
    # fal's convention: queue_position is the number of requests ahead, 0 = next.
    assert (second_status.state, second_status.queue_position) == ("queued", 0)
    assert (third_status.state, third_status.queue_position) == ("queued", 1)

    third_positions: list[int] = []
    while True:
        statuses = [await provider.status(ENDPOINT, rid) for rid in (first, second, third)]
        assert sum(s.state == "processing" for s in statuses) <= 1
        if statuses[2].state == "queued":
            third_positions.append(statuses[2].queue_position)
        if all(s.state == "completed" for s in statuses):
            break
        await asyncio.sleep(0.01)

    assert third_positions == sorted(third_positions, reverse=True)
    assert {0, 1} <= set(third_positions)
    for rid in (first, second, third):
        assert len(await read_result(provider, rid)) > 0


async def test_progress_is_reported_in_logs(make_provider) -> None:
    provider = make_provider()
    request_id = await provider.submit(
        request(data_uri(png_bytes()), duration=15, aspect_ratio="1:1")
    )
    statuses = await wait_until_completed(provider, request_id, timeout=60)

    assert any(s.state == "processing" for s in statuses)
    logs = statuses[-1].logs
    percents = [int(m.group(1)) for line in logs if (m := re.fullmatch(r"Rendering (\d+)%", line))]
    assert percents[0] == 0
    assert percents[-1] == 100
    assert percents == sorted(percents)
    assert any(0 < p < 100 for p in percents), logs
    # Progress is visible while the render runs, not only at the end.
    assert any(
        any(line.startswith("Rendering") for line in s.logs)
        for s in statuses
        if s.state == "processing"
    )


async def test_cancel_a_queued_job(make_provider) -> None:
    provider = make_provider(concurrency=1)
    image = data_uri(png_bytes())
    running = await provider.submit(request(image, duration=15, aspect_ratio="1:1"))
    queued = await provider.submit(request(image, duration=1))
    assert (await provider.status(ENDPOINT, queued)).state == "queued"

    await provider.cancel(ENDPOINT, queued)

    assert (await provider.status(ENDPOINT, queued)).state == "completed"
    with pytest.raises(ProviderError, match="canceled"):
        await read_result(provider, queued)
    assert (await provider.status(ENDPOINT, running)).state == "processing"
    later = await provider.submit(request(image, duration=1))
    assert (await provider.status(ENDPOINT, later)).queue_position == 0  # the gap closed
    await provider.cancel(ENDPOINT, queued)  # canceling twice is fine


async def test_cancel_a_running_job_kills_ffmpeg(make_provider) -> None:
    provider = make_provider(concurrency=1)
    image = data_uri(png_bytes())
    running = await provider.submit(request(image, duration=15, aspect_ratio="1:1"))
    waiting = await provider.submit(request(image, duration=1))
    await wait_for(lambda: ffmpeg_running_for(running))

    started = time.monotonic()
    await provider.cancel(ENDPOINT, running)

    assert time.monotonic() - started < 2
    assert not ffmpeg_running_for(running)
    assert (await provider.status(ENDPOINT, running)).state == "completed"
    with pytest.raises(ProviderError, match="canceled"):
        await read_result(provider, running)
    assert not [p for p in provider.work_dir.iterdir() if p.name.startswith(running)]
    # The freed slot goes to the next job in line.
    await wait_until_completed(provider, waiting)
    assert len(await read_result(provider, waiting)) > 0


async def test_cancel_of_finished_or_unknown_jobs_is_not_an_error(make_provider) -> None:
    provider = make_provider()
    request_id = await provider.submit(request(data_uri(png_bytes()), duration=1))
    await wait_until_completed(provider, request_id)

    await provider.cancel(ENDPOINT, request_id)
    await provider.cancel(ENDPOINT, "0" * 32)

    assert len(await read_result(provider, request_id)) > 0


async def test_aclose_stops_running_renders(make_provider) -> None:
    provider = make_provider(concurrency=1)
    image = data_uri(png_bytes())
    running = await provider.submit(request(image, duration=15, aspect_ratio="1:1"))
    queued = await provider.submit(request(image, duration=1))
    await wait_for(lambda: ffmpeg_running_for(running))

    await provider.aclose()

    assert not ffmpeg_running_for(running)
    for rid in (running, queued):
        assert (await provider.status(ENDPOINT, rid)).state == "completed"
    with pytest.raises(TransientProviderError):
        await provider.submit(request(image, duration=1))


# --- results and failures ------------------------------------------------------------------


async def test_a_read_over_max_bytes_is_refused_and_the_next_read_works(make_provider) -> None:
    provider = make_provider()
    request_id = await provider.submit(request(data_uri(png_bytes()), duration=1))
    await wait_until_completed(provider, request_id)

    ok = await read_result(provider, request_id, max_bytes=50_000_000)
    got: list[bytes] = []
    with pytest.raises(ProviderError, match="limit"):
        await read_result(provider, request_id, max_bytes=len(ok) - 1, got=got)
    assert got == []  # refused before the first byte
    again = await read_result(provider, request_id, max_bytes=len(ok))
    assert len(again) == len(ok)


async def test_stream_result_is_the_render_and_enforces_max_bytes(make_provider) -> None:
    provider = make_provider()
    request_id = await provider.submit(request(data_uri(png_bytes()), duration=1))
    await wait_until_completed(provider, request_id)
    whole = (provider.work_dir / f"{request_id}.mp4").read_bytes()  # the rendered file

    streamed = [c async for c in provider.stream_result(ENDPOINT, request_id, len(whole))]
    assert b"".join(streamed) == whole
    chunks = provider.stream_result(ENDPOINT, request_id, len(whole) - 1)
    with pytest.raises(ProviderError, match="limit"):
        await anext(chunks)  # refused before the first byte
    await chunks.aclose()


@pytest.mark.parametrize(
    ("image_url", "message"),
    [
        (
            "data:image/png;base64," + base64.b64encode(b"not an image").decode(),
            "could not be read",
        ),
        ("data:image/png;base64,!!not-base64!!", "not valid base64"),
        ("data:image/png;base64", "malformed"),
        ("ftp://example.com/start.png", "data: URI or an http"),
        (data_uri(png_bytes()[:200]), "could not be read"),  # truncated PNG
    ],
    ids=["not-an-image", "bad-base64", "no-comma", "bad-scheme", "truncated"],
)
async def test_bad_start_image_completes_with_an_error(
    make_provider, image_url: str, message: str
) -> None:
    provider = make_provider()
    request_id = await provider.submit(request(image_url, duration=1))

    statuses = await wait_until_completed(provider, request_id, timeout=10)

    assert statuses[-1].state == "completed"
    got: list[bytes] = []
    with pytest.raises(ProviderError, match=message) as raised:
        await read_result(provider, request_id, got=got)
    assert not isinstance(raised.value, TransientProviderError)
    assert got == []


async def test_a_finished_render_survives_a_restart_and_a_lost_one_renders_again(
        make_provider) -> None:
    before_restart = make_provider()
    req = request(data_uri(png_bytes()), duration=1)
    request_id = await before_restart.submit(req)
    await wait_until_completed(before_restart, request_id)
    first = await read_result(before_restart, request_id)
    after_restart = make_provider()  # a new process, the same renders directory

    # A render that finished before the restart is found by its file.
    assert (await after_restart.status(ENDPOINT, request_id)).state == "completed"
    again = await read_result(after_restart, request_id)
    assert len(again) == len(first)
    # One this process never heard of is lost: RenderLost, which the driver answers by
    # submitting the request again under the same id.
    lost = "f" * 32
    for call in (after_restart.status(ENDPOINT, lost),
                 read_result(after_restart, lost)):
        with pytest.raises(RenderLost, match=re.escape(LOST_MESSAGE)):
            await call
    assert await after_restart.submit(req, request_id=lost) == lost
    await wait_until_completed(after_restart, lost)
    assert len(await read_result(after_restart, lost)) > 0


async def test_fetch_before_completion_is_transient(make_provider) -> None:
    provider = make_provider()
    request_id = await provider.submit(
        request(data_uri(png_bytes()), duration=15, aspect_ratio="1:1")
    )
    with pytest.raises(TransientProviderError):
        await read_result(provider, request_id)
    await provider.cancel(ENDPOINT, request_id)


# --- file descriptors ----------------------------------------------------------------------


class _ProbedPipe(io.BufferedReader):
    """A render's stdout or stderr that notes whether its descriptor was closed by someone
    else before its own close (a second close of the same number), and then takes the freed
    number at once with a new pipe, so that a later stray close of it shows too."""

    log: list[str]
    taken: list[int]

    def close(self) -> None:
        if not self.closed:
            fd = self.fileno()
            try:
                os.fstat(fd)
            except OSError:
                self.log.append(f"fd {fd} was closed before its file object closed it")
            super().close()
            self.taken.extend(os.pipe())


def test_a_render_under_uvloop_closes_each_pipe_once(tmp_path: Path, monkeypatch) -> None:
    """`serve` runs on uvloop, whose read-pipe transport closes the descriptor and then the
    file object closes the same number again (MagicStack/uvloop#763). In between, another
    thread may have opened a file under that number, e.g. a video being served, whose read
    then fails with EBADF: seen as ERR_CONTENT_LENGTH_MISMATCH in the browser."""
    import uvloop

    log: list[str] = []
    taken: list[int] = []
    popen = subprocess.Popen

    class ProbedPopen(popen):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            for name in ("stdout", "stderr"):
                pipe = getattr(self, name)
                if pipe is not None:
                    probed = _ProbedPipe(pipe.detach())
                    probed.log, probed.taken = log, taken
                    setattr(self, name, probed)

    monkeypatch.setattr(subprocess, "Popen", ProbedPopen)

    async def render_twice() -> None:
        provider = LocalProvider(tmp_path / "renders", concurrency=1)
        try:
            for _ in range(2):
                request_id = await provider.submit(request(data_uri(png_bytes()), duration=1))
                await wait_until_completed(provider, request_id)
                assert len(await read_result(provider, request_id)) > 0
        finally:
            await provider.aclose()

    failed: list[BaseException] = []

    def run() -> None:  # a thread of its own: the tests' loop stays this thread's loop
        try:
            uvloop.run(render_twice())
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(120)
    assert not thread.is_alive() and not failed, failed
    gc.collect()  # a transport dropped without being closed would close its fd now
    try:
        assert log == []
        assert len(taken) == 8  # stdout and stderr of two renders, each closed once
        for fd in taken:
            os.fstat(fd)  # still open: nothing closed the number a second time
    finally:
        for fd in taken:
            with contextlib.suppress(OSError):
                os.close(fd)
