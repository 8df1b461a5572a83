"""Checking an uploaded image by decoding it: what it is, not what it claims to be.

Decoding is CPU work that a small file can make long: an 89 KB WebP can declare 12000 x 4166
pixels and take 1.6 s to decode. Pillow's WebP decoder holds the GIL for long stretches
(up to 0.45 s at once for a 40-megapixel WebP), so a thread would still freeze the event
loop: `check_image` decodes in a pool of DECODE_WORKERS processes instead. At most that many
images are decoded at once, however many uploads arrive; a request waiting for a worker
awaits a future and never holds the loop. Inside the worker the cheap checks come first:
the format and the dimensions declared in the header (Image.open reads only the header)
before any pixel is inflated.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import multiprocessing
import os
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from PIL import Image

from app.media_limits import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, limit_in_words

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
FORMATS = {"PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg"),
           "WEBP": ("webp", "image/webp")}
DECODE_WORKERS = 2
TOO_LARGE = f"The image is too large: {limit_in_words()}"
UNREADABLE = "The file is not a readable PNG, JPEG or WebP image"


class UploadRejected(ValueError):
    pass


def inspect_image(data: bytes) -> tuple[str, str]:
    """Return (extension, content type) for a PNG, JPEG or WebP, or raise UploadRejected.
    Synchronous and CPU-bound: call `check_image` from async code."""
    if not data:
        raise UploadRejected("The file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadRejected("Images can be at most 20 MB")
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 MP on; our own limit below is lower and says it better.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(FORMATS)) as img:
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS or max(width, height) > MAX_IMAGE_SIDE:
                    raise UploadRejected(TOO_LARGE)  # from the header: nothing decoded yet
                fmt = img.format
                img.verify()
            if fmt not in FORMATS:  # opened with formats=FORMATS, so never (Pillow: str | None)
                raise UploadRejected(UNREADABLE)
            with Image.open(io.BytesIO(data), formats=[fmt]) as img:
                img.load()  # decode fully: truncated or corrupt files fail here
    except UploadRejected:
        raise
    except Image.DecompressionBombError:  # Pillow's own check, from 179 MP declared
        raise UploadRejected(TOO_LARGE) from None
    except Exception:
        raise UploadRejected(UNREADABLE) from None
    return FORMATS[fmt]


def _start_worker() -> None:
    """In each decoder process: yield the CPU to the web process (a machine may have two
    cores), and end with the app process however that ends (SIGKILL included), instead of
    waiting forever for work from a parent that is gone."""
    os.nice(10)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()  # the spawn pipe's sentinel: readable once the parent has exited
    os._exit(0)


_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _decoders() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # spawn: the app process has threads (database engine, driver), which fork
            # would copy in an unknown state.
            _pool = ProcessPoolExecutor(
                max_workers=DECODE_WORKERS, initializer=_start_worker,
                mp_context=multiprocessing.get_context("spawn"))
        return _pool


def _discard(broken: ProcessPoolExecutor) -> None:
    global _pool
    with _pool_lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


async def _decode(data: bytes) -> tuple[str, str]:
    pool = _decoders()
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, inspect_image, data)
    except BrokenProcessPool:
        _discard(pool)
        raise


async def check_image(data: bytes) -> tuple[str, str]:
    """`inspect_image` in the decoder pool, off the event loop."""
    if not data or len(data) > MAX_UPLOAD_BYTES:
        return inspect_image(data)  # refused by its length alone: nothing to decode
    # A worker that dies (killed for memory, or a decoder crash) takes the pool with it;
    # the next call starts a fresh pool, and this upload gets one more try there.
    with contextlib.suppress(BrokenProcessPool):
        return await _decode(data)
    try:
        return await _decode(data)
    except BrokenProcessPool:
        raise UploadRejected(UNREADABLE) from None
