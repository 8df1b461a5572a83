"""A finished video's poster: one JPEG frame taken with the bundled ffmpeg (imageio-ffmpeg)
and stored next to the video, so that library tiles and job rows show a still instead of a
<video> each. Best effort: the caller files the video whether or not a poster was made."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
from pathlib import Path

import imageio_ffmpeg

from app.observability.logging import get_logger
from app.storage.base import Storage

log = get_logger("reelforge.posters")

SUFFIX = ".poster.jpg"
WIDTH = 480  # twice a tile's width on a phone; the player shows it until the video plays
AT_SECONDS = 1.0  # past the first frame (a fade-in or a black start); shorter clips: frame 0
TIMEOUT = 10.0  # seconds for the whole poster, ffmpeg and upload; a frame takes ~0.2 s


def poster_key(video_key: str) -> str:
    """`…/videos/{job}.mp4` → `…/videos/{job}.poster.jpg`."""
    stem, dot, _ext = video_key.rpartition(".")
    return (stem if dot else video_key) + SUFFIX


def is_poster_key(key: str) -> bool:
    return key.endswith(SUFFIX)


def video_key_of(key: str) -> str:
    """The video a poster key belongs to (finished videos are MP4s, app/jobs/driver.py)."""
    return key.removesuffix(SUFFIX) + ".mp4"


async def _frame(ffmpeg: str, video: Path, dest: Path, at: float) -> bool:
    """Write one frame at `at` seconds as a JPEG. False when there was no frame there (or
    the file is no video). ffmpeg is started from a worker thread, never from the event
    loop: uvloop forks on the loop's thread and runs Python's at-fork handlers in the
    child, which deadlocked there (a lock held by another thread at the fork) while
    finishing videos under load; `subprocess` execs from C."""
    return await asyncio.to_thread(_frame_now, ffmpeg, video, dest, at)


def _frame_now(ffmpeg: str, video: Path, dest: Path, at: float) -> bool:
    try:
        done = subprocess.run(  # noqa: S603 - a fixed program and arguments, no shell
            [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
             "-ss", f"{at:.2f}", "-i", str(video), "-frames:v", "1",
             "-vf", f"scale='min({WIDTH},iw)':-2", "-q:v", "4", "-f", "image2", str(dest)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:  # run() has killed it
        return False
    if done.returncode != 0 and done.stderr and at == 0:  # the last try: say why
        log.info("poster.ffmpeg_error", detail=done.stderr.decode("utf-8", "replace")[-300:])
    return done.returncode == 0 and _nonempty(dest)


def _nonempty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


async def _make(storage: Storage, video_key: str, video: Path, work_dir: Path,
                limit: asyncio.Semaphore | None) -> str | None:
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
    async with limit or contextlib.nullcontext():
        return await _take(storage, ffmpeg, video_key, video, work_dir)


async def _take(storage: Storage, ffmpeg: str, video_key: str, video: Path,
                work_dir: Path) -> str | None:
    with tempfile.TemporaryDirectory(dir=work_dir, prefix=".poster-") as tmp:
        dest = Path(tmp) / "poster.jpg"
        if not (await _frame(ffmpeg, video, dest, AT_SECONDS)
                or await _frame(ffmpeg, video, dest, 0.0)):
            return None
        key = poster_key(video_key)
        await storage.put_file(key, dest, "image/jpeg")
        return key


async def make_poster(storage: Storage, video_key: str, video: Path, work_dir: Path,
                      limit: asyncio.Semaphore | None = None) -> str | None:
    """Take a frame of the video file at `video` and store it at poster_key(video_key),
    at most `limit` at a time. Returns that key, or None (logged) when anything went wrong
    or the whole, waiting included, took over TIMEOUT."""
    try:
        key = await asyncio.wait_for(_make(storage, video_key, video, work_dir, limit),
                                     TIMEOUT)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a poster is a nicety: it must never fail the job
        log.warning("poster.failed", video_key=video_key,
                    error=f"{type(exc).__name__}: {exc}"[:300])
        return None
    if key is None:
        log.warning("poster.no_frame", video_key=video_key)
    return key


async def stored_poster(storage: Storage, video_key: str) -> str | None:
    """The poster's key if one is stored for this video (a finalize repeated after a crash
    finds the video, and maybe its poster, already stored)."""
    try:
        return poster_key(video_key) if await storage.exists(poster_key(video_key)) else None
    except Exception:
        return None
