"""How the server process asks glibc's malloc to use memory.

glibc gives threads that allocate at the same time arenas of their own, up to eight per core,
and memory freed in one arena is not reused by the others. The server allocates from many
threads at once: the event loop, the worker threads of `asyncio.to_thread`, and the embedded
SurrealDB engine's own (Rust) threads. So its RSS kept rising with freed but unreusable
memory (docs/BENCHMARKS.md §6). Two arenas is the usual cure; an operator's own
MALLOC_ARENA_MAX wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Limit this process (from now on) and the processes it starts (through the
    environment: `serve --workers`, ffmpeg) to `arenas` malloc arenas. False where there is
    nothing to do: not Linux, MALLOC_ARENA_MAX already set, or a libc without mallopt."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    os.environ["MALLOC_ARENA_MAX"] = str(arenas)
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(_M_ARENA_MAX, arenas) == 1
