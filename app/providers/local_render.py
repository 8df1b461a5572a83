"""The local renderer: makes one MP4 from a start image and a caption.

A render takes the start image (a `data:` URI or an http(s) URL), cover-crops it to the
requested aspect ratio with Pillow, draws the caption into a transparent overlay with
Pillow (no font files or fontconfig needed), and has ffmpeg (the binary shipped by
imageio-ffmpeg) apply a slow zoom and pan and encode H.264 / yuv420p with the index at the
front of the file, which every browser plays. ffmpeg's `-progress` output becomes
"Rendering N%" log lines. The queue around it is app/providers/local.py.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import math
import os
import re
import subprocess
import unicodedata
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import httpx
import imageio_ffmpeg
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from app.jobs.crashpoints import crashpoint
from app.media_limits import MAX_IMAGE_PIXELS  # one limit, with uploads
from app.providers.base import ProviderError, SubmitRequest

FPS = 24
DEFAULT_DURATION = 5.0
MIN_DURATION, MAX_DURATION = 1.0, 15.0
# Output area: 640x360 for 16:9, 360x640 for 9:16, 480x480 for 1:1.
OUTPUT_AREA = 640 * 360
# The still is prepared at this multiple of the output size, so zoompan's whole-pixel crop
# steps are a third of an output pixel and the motion looks smooth.
SUPERSAMPLE = 3
ZOOM = 0.15  # the clip ends 15% closer than it starts
MAX_IMAGE_BYTES = 25 * 1024 * 1024
MAX_CAPTION_CHARS = 200
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
)


def parse_duration(value: object) -> float:
    """Seconds from a model parameter such as 5, "5" or "5s"; clamped to 1..15, default 5."""
    if value is None or isinstance(value, bool):
        return DEFAULT_DURATION
    try:
        seconds = float(str(value).strip().lower().removesuffix("s"))
    except ValueError:
        return DEFAULT_DURATION
    if not math.isfinite(seconds):
        return DEFAULT_DURATION
    return min(MAX_DURATION, max(MIN_DURATION, seconds))


def frame_size(aspect_ratio: object) -> tuple[int, int]:
    """Even output dimensions for an aspect ratio such as "16:9" (640x360), default 16:9."""
    ratio = 16 / 9
    if isinstance(aspect_ratio, str) and ":" in aspect_ratio:
        left, _, right = aspect_ratio.partition(":")
        try:
            width, height = float(left), float(right)
        except ValueError:
            width = height = 0.0
        if width > 0 and height > 0 and math.isfinite(width / height):
            ratio = width / height
    ratio = min(3.0, max(1 / 3, ratio))
    width_f = math.sqrt(OUTPUT_AREA * ratio)
    return 2 * round(width_f / 2), 2 * round(width_f / ratio / 2)


@dataclass
class Render:
    id: str
    request: SubmitRequest | None  # dropped once the render has started (it may hold MBs)
    duration: float
    width: int
    height: int
    state: Literal["queued", "processing", "completed"] = "queued"
    logs: list[str] = field(default_factory=list)
    error: str | None = None
    output: Path | None = None
    task: asyncio.Task[None] | None = None
    finished_at: float | None = None

    @property
    def frames(self) -> int:
        return max(1, round(self.duration * FPS))


class Renderer:
    """Makes the video of one render in `work_dir`: files named `{render id}{suffix}`."""

    def __init__(
        self, work_dir: Path, max_image_bytes: int, http_client: httpx.AsyncClient | None
    ) -> None:
        self.work_dir = work_dir
        self.max_image_bytes = max_image_bytes
        self._ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        self._http = http_client
        self._owns_http = http_client is None

    def path(self, render_id: str, suffix: str) -> Path:
        return self.work_dir / f"{render_id}{suffix}"

    async def aclose(self) -> None:
        if self._http is not None and self._owns_http:
            await self._http.aclose()
            self._http = None

    async def render(self, render: Render) -> None:
        """Write `{id}.mp4`, or raise ProviderError; the caller removes the work files."""
        request = render.request
        assert request is not None
        render.request = None
        render.logs.append("Preparing the start image")
        raw = await self._load_image(request.image_url)
        background = self.path(render.id, ".bg.png")
        caption = self.path(render.id, ".caption.png")
        has_caption = await asyncio.to_thread(
            _prepare_inputs, raw, render.width, render.height, request.caption, background, caption
        )
        del raw
        await self._encode(render, background, caption if has_caption else None)
        self.path(render.id, ".part").replace(self.path(render.id, ".mp4"))

    async def _encode(self, render: Render, background: Path, caption: Path | None) -> None:
        frames = render.frames
        # Slow zoom in, with a sideways drift whose direction depends on the request.
        drift = "(0.3+0.4*on/{n})" if int(render.id[-1], 16) % 2 else "(0.7-0.4*on/{n})"
        zoompan = (
            f"zoompan=z='1+{ZOOM}*on/{frames}'"
            f":x='(iw-iw/zoom)*{drift.format(n=frames)}':y='(ih-ih/zoom)/2'"
            f":d={frames}:s={render.width}x{render.height}:fps={FPS}"
        )
        inputs = ["-i", str(background)]
        if caption is None:
            graph = f"[0:v]{zoompan},setsar=1,format=yuv420p[v]"
        else:
            inputs += ["-i", str(caption)]
            graph = f"[0:v]{zoompan},setsar=1[bg];[bg][1:v]overlay=0:0,format=yuv420p[v]"
        args = [
            self._ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            *inputs,
            "-filter_complex",
            graph,
            "-map",
            "[v]",
            "-frames:v",
            str(frames),
            "-r",
            str(FPS),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "23",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
            "-an",
            "-progress",
            "pipe:1",
            "-stats_period",
            "0.25",
            "-f",
            "mp4",
            str(self.path(render.id, ".part")),
        ]
        render.logs.append("Rendering 0%")
        process, stdout, stderr_pipe = await _spawn(args)
        stderr_task = asyncio.create_task(_read_tail(stderr_pipe))
        try:
            await self._follow_progress(render, stdout, frames)
            returncode = await asyncio.to_thread(process.wait)
            stderr = await stderr_task
        finally:
            if process.poll() is None:
                _kill(process)
            if not stderr_task.done():
                stderr_task.cancel()
                await asyncio.wait([stderr_task])
            _close_pipes(process)
        if returncode != 0:
            detail = stderr.decode("utf-8", "replace").strip().splitlines()
            reason = detail[-1] if detail else f"exit status {returncode}"
            raise ProviderError(f"The local render failed: ffmpeg: {reason}")
        if render.logs[-1] != "Rendering 100%":
            render.logs.append("Rendering 100%")

    async def _follow_progress(
        self, render: Render, stdout: asyncio.StreamReader | None, frames: int
    ) -> None:
        """Turn ffmpeg's `-progress` key=value blocks into "Rendering N%" log lines."""
        if stdout is None:
            return
        done = 0
        shown = 0
        async for raw_line in stdout:
            key, _, value = raw_line.decode("ascii", "replace").strip().partition("=")
            if key == "frame" and value.isdigit():
                done = int(value)
            elif key == "progress":
                percent = 100 if value == "end" else min(99, done * 100 // frames)
                if percent > shown:
                    shown = percent
                    render.logs.append(f"Rendering {percent}%")
                    crashpoint("while_rendering")

    # --- the start image ---------------------------------------------------------------

    async def _load_image(self, url: str) -> bytes:
        if url.startswith("data:"):
            return _decode_data_uri(url, self.max_image_bytes)
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise ProviderError("The start image URL must be a data: URI or an http(s) URL")
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=True
            )
        try:
            async with self._http.stream("GET", url) as response:
                if response.status_code != 200:
                    raise ProviderError(
                        f"Could not fetch the start image (HTTP {response.status_code})"
                    )
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_image_bytes:
                    raise ProviderError(_too_large(self.max_image_bytes))
                buffer = bytearray()
                async for chunk in response.aiter_bytes():
                    buffer += chunk
                    if len(buffer) > self.max_image_bytes:
                        raise ProviderError(_too_large(self.max_image_bytes))
                return bytes(buffer)
        except httpx.HTTPError as exc:
            raise ProviderError(f"Could not fetch the start image: {exc}") from exc


# --- helpers run in worker threads -------------------------------------------------------


def _too_large(limit: int) -> str:
    return f"The start image is larger than the limit of {limit:,} bytes"


def _decode_data_uri(url: str, limit: int) -> bytes:
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise ProviderError("The start image data: URI is malformed")
    if len(payload) > limit * 4 // 3 + 4:
        raise ProviderError(_too_large(limit))
    if header.lower().endswith(";base64"):
        try:
            data = base64.b64decode(
                re.sub(r"\s+", "", urllib.parse.unquote(payload)), validate=True
            )
        except (binascii.Error, ValueError) as exc:
            raise ProviderError("The start image data: URI is not valid base64") from exc
    else:
        data = urllib.parse.unquote_to_bytes(payload)
    if len(data) > limit:
        raise ProviderError(_too_large(limit))
    return data


def _prepare_inputs(
    raw: bytes, width: int, height: int, caption: str, background: Path, overlay: Path
) -> bool:
    """Write the cover-cropped still (at SUPERSAMPLE x the output size) and, when there is a
    caption, a transparent overlay with it. Returns whether the overlay was written."""
    try:
        with Image.open(io.BytesIO(raw)) as opened:
            if opened.width * opened.height > MAX_IMAGE_PIXELS:
                raise ProviderError("The start image has too many pixels")
            target = (width * SUPERSAMPLE, height * SUPERSAMPLE)
            opened.draft("RGB", target)  # JPEG: decode at a reduced size when it can
            image = ImageOps.exif_transpose(opened)
            image.load()
    except ProviderError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise ProviderError(f"The start image could not be read: {exc}") from exc
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (16, 16, 16))
        image.paste(rgba, mask=rgba.getchannel("A"))
    else:
        image = image.convert("RGB")
    image = ImageOps.fit(image, target, method=Image.Resampling.LANCZOS)
    image.save(background, "PNG", compress_level=1)

    text = _clean_caption(caption)
    if not text:
        return False
    _caption_overlay(text, width, height).save(overlay, "PNG", compress_level=1)
    return True


def _clean_caption(caption: str) -> str:
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in (caption or ""))
    text = " ".join(text.split())
    if len(text) > MAX_CAPTION_CHARS:
        text = text[: MAX_CAPTION_CHARS - 1].rstrip() + "…"
    return text


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for candidate in FONT_CANDIDATES:
        with contextlib.suppress(OSError):
            return ImageFont.truetype(candidate, size)
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled font (needs FreeType)
    except (ImportError, OSError, TypeError):
        return ImageFont.load_default()


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}".strip()
        if font.getlength(candidate) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    # A single word wider than the frame: cut it to fit.
    fitted = []
    for line in lines:
        while len(line) > 1 and font.getlength(line) > width:
            line = line[:-2] + "…"
        fitted.append(line)
    return fitted


def _caption_overlay(text: str, width: int, height: int) -> Image.Image:
    size = max(12, round(min(width, height) / 14))
    font = _font(size)
    margin = round(size * 0.6)
    lines = _wrap(text, font, width - 4 * margin)
    if len(lines) > 3:
        lines = lines[:3]
        lines[2] = lines[2].rstrip("…") + "…"
        while len(lines[2]) > 1 and font.getlength(lines[2]) > width - 4 * margin:
            lines[2] = lines[2][:-2] + "…"
    line_height = round(size * 1.25)
    block = line_height * len(lines)
    overlay = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    top = height - margin - block - margin
    widest = max(font.getlength(line) for line in lines)
    left = (width - widest) / 2 - margin
    draw.rounded_rectangle(
        (left, top - margin / 2, width - left, height - margin),
        radius=margin / 2,
        fill=(0, 0, 0, 140),
    )
    for index, line in enumerate(lines):
        draw.text(
            (width / 2, top + index * line_height + line_height / 2),
            line,
            font=font,
            fill=(255, 255, 255, 255),
            anchor="mm",
            stroke_width=max(1, size // 14),
            stroke_fill=(0, 0, 0, 255),
        )
    return overlay


async def _spawn(args: list[str]) -> tuple[subprocess.Popen[bytes], asyncio.StreamReader,
                                           asyncio.StreamReader]:
    """Start `args`, its stdout and stderr read on the event loop (`_close_pipes` after).
    It is started from a worker thread, not by the loop: uvloop forks on the loop's thread
    and runs Python's at-fork handlers in the child, which can deadlock there on a lock
    another thread held at the fork (seen with the poster's ffmpeg while videos were
    finishing under load); `subprocess` execs from C. A cancel while it starts still ends
    the process."""
    started = asyncio.ensure_future(asyncio.to_thread(
        subprocess.Popen, args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE))
    try:
        process = await asyncio.shield(started)
    except asyncio.CancelledError:  # the thread still starts it: end it before giving up
        with contextlib.suppress(Exception):
            _kill(await started)
        raise
    try:
        loop = asyncio.get_running_loop()
        readers = [_pipe_reader(loop, pipe) for pipe in (process.stdout, process.stderr)]
    except BaseException:
        _kill(process)
        _close_pipes(process)
        raise
    return process, readers[0], readers[1]


def _pipe_reader(loop: asyncio.AbstractEventLoop, pipe: IO[bytes] | None
                 ) -> asyncio.StreamReader:
    """A reader fed from `pipe` by the loop's poller. Not `loop.connect_read_pipe`: under
    uvloop its transport closes the descriptor and then the pipe's file object closes the
    same number again (MagicStack/uvloop#763); if another thread opened a file in between
    (a video being served), that file is closed under it. Here the descriptor stays the
    file object's, closed once by `_close_pipes`."""
    assert pipe is not None  # both are PIPE
    reader = asyncio.StreamReader()
    fd = pipe.fileno()
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            loop.remove_reader(fd)
            reader.set_exception(exc)
            return
        if data:
            reader.feed_data(data)
        else:
            loop.remove_reader(fd)
            reader.feed_eof()

    loop.add_reader(fd, readable)
    return reader


def _close_pipes(process: subprocess.Popen[bytes]) -> None:
    """Stop watching a render's pipes and close them, once."""
    loop = asyncio.get_running_loop()
    for pipe in (process.stdout, process.stderr):
        if pipe is not None and not pipe.closed:
            loop.remove_reader(pipe.fileno())
            pipe.close()


def _kill(process: subprocess.Popen[bytes]) -> None:
    """End a render's ffmpeg now (SIGKILL, then reaped: it exits at once)."""
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


async def _read_tail(stream: asyncio.StreamReader | None, keep: int = 4096) -> bytes:
    """Read a stream to its end, keeping only the last `keep` bytes."""
    if stream is None:
        return b""
    tail = b""
    while chunk := await stream.read(65536):
        tail = (tail + chunk)[-keep:]
    return tail
