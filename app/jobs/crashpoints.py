"""Named points in the driver where the crash tests kill the process.

`REELFORGE_CRASH_AT=after_submit` makes the process exit abruptly (no clean-up, like a
SIGKILL) the first time it reaches that point; unset, this costs one dict lookup."""

from __future__ import annotations

import os

POINTS = (
    "before_submit", "after_submit", "while_processing", "after_download",
    "after_upload", "after_charge",
)


def crashpoint(name: str) -> None:
    if os.environ.get("REELFORGE_CRASH_AT") == name:
        os._exit(137)
