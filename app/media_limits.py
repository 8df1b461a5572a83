"""Limits on images, shared by the upload check (app/web/uploads.py) and the local renderer
(app/providers/local_render.py): one number in one place, so the library never accepts an image
that a render would then refuse."""

from __future__ import annotations

MAX_IMAGE_PIXELS = 40_000_000  # about 7300 x 5480; decoded as RGBA that is 160 MB
MAX_IMAGE_SIDE = 12_000  # the longest side an image may have, whatever its area


def limit_in_words() -> str:
    return (f"at most {MAX_IMAGE_PIXELS // 1_000_000} megapixels "
            f"and {MAX_IMAGE_SIDE:,} pixels on the longest side")
