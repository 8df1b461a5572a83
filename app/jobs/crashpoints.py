"""Named points in the driver where the crash tests kill the process.

`REELFORGE_CRASH_AT=after_submit` makes the process exit abruptly (no clean-up, like a
SIGKILL) the first time it reaches that point; unset, this costs one dict lookup. With
`REELFORGE_CRASH_ONCE=<path>` too, only the first of several processes to get there exits
(the one that creates the file): the others go on, as the survivors of a crash would."""

from __future__ import annotations

import os

POINTS = (
    "before_submit", "after_submit", "while_processing", "after_download",
    "after_upload", "after_charge",
)


RENDER_POINTS = ("while_rendering",)  # inside the local renderer


def crashpoint(name: str) -> None:
    if os.environ.get("REELFORGE_CRASH_AT") == name:
        once = os.environ.get("REELFORGE_CRASH_ONCE")
        if once:
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
        os._exit(137)
