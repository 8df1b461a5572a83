"""Checking an uploaded image by decoding it: what it is, not what it claims to be."""

from __future__ import annotations

import io
import warnings

from PIL import Image

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 50_000_000  # about 8K x 6K; larger is a decompression bomb for our purposes
MAX_SIDE = 12_000
FORMATS = {"PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg"),
           "WEBP": ("webp", "image/webp")}


class UploadRejected(ValueError):
    pass


def inspect_image(data: bytes) -> tuple[str, str]:
    """Return (extension, content type) for a PNG, JPEG or WebP, or raise UploadRejected."""
    if not data:
        raise UploadRejected("The file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadRejected("Images can be at most 20 MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format
                width, height = img.size
                if fmt not in FORMATS:
                    raise UploadRejected("Only PNG, JPEG and WebP images are accepted")
                if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
                    raise UploadRejected("The image is too large (at most 50 megapixels)")
                img.verify()
            with Image.open(io.BytesIO(data)) as img:
                img.load()  # decode fully: truncated or corrupt files fail here
    except UploadRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadRejected("The image is too large (at most 50 megapixels)") from None
    except Exception:
        raise UploadRejected("The file is not a readable PNG, JPEG or WebP image") from None
    return FORMATS[fmt]
