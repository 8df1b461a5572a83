"""`python -m app serve` with tracemalloc on: each SIGUSR1 writes a snapshot.

For finding what grows in the app's own memory (`scripts/soak.py --tracemalloc DIR` starts
the server through this and signals it after the warm-up and at the end of the load):

    TRACEMALLOC_DIR=/tmp/snaps python scripts/bench/traced_serve.py
    python scripts/bench/tracemalloc_diff.py /tmp/snaps/snap-1.pickle /tmp/snaps/snap-2.pickle

Each SIGUSR2 appends glibc's malloc figures (`mallinfo2`: bytes in use, free bytes the heap
keeps, mmapped), pymalloc's (arenas held, bytes in objects, free bytes inside the arenas) and
the RSS to `malloc.jsonl` there: memory that tracemalloc does not see (C extensions, OpenSSL)
or that an allocator keeps after Python freed it. Arenas that grow while the bytes in objects
do not are fragmentation: a few live objects keep each 1 MiB arena. With
`MALLOC_TRIM=1` it then calls `malloc_trim(0)` and records the RSS after it.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import re
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from harness import rss_kib  # noqa: E402 (this script's folder, first on the path)

FRAMES = int(os.environ.get("TRACEMALLOC_FRAMES", "6"))
OUT = Path(os.environ.get("TRACEMALLOC_DIR", "bench-results/tracemalloc"))
_numbers = itertools.count(1)


def _snapshot(_signum: int, _frame: object) -> None:
    if not tracemalloc.is_tracing():
        return
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"snap-{next(_numbers)}.pickle"
    tracemalloc.take_snapshot().dump(str(path))
    print(f"tracemalloc snapshot written to {path}", file=sys.stderr, flush=True)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


PYMALLOC = {"arenas": r"# arenas allocated current\s*=\s*([\d,]+)",
            "in_objects": r"# bytes in allocated blocks\s*=\s*([\d,]+)",
            "free_in_pools": r"# bytes in available blocks\s*=\s*([\d,]+)",
            "unused_pools": r"unused pools \* \d+ bytes\s*=\s*([\d,]+)"}


def _pymalloc() -> dict[str, int]:
    """pymalloc's own figures: `sys._debugmallocstats` is its only window, and it writes to
    the C stderr, so fd 2 is pointed at a file for the call."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as out:
        sys.stderr.flush()
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    found = {name: re.search(pattern, text) for name, pattern in PYMALLOC.items()}
    figures = {name: int(m.group(1).replace(",", "")) for name, m in found.items() if m}
    kib = 1024
    return {"pymalloc_arenas": figures.get("arenas", 0),
            "pymalloc_objects_kib": figures.get("in_objects", 0) // kib,
            "pymalloc_free_kib": (figures.get("free_in_pools", 0)
                                  + figures.get("unused_pools", 0)) // kib}


def _malloc_stats(_signum: int, _frame: object) -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    kib = 1024
    row = {"at": round(time.time(), 1), "rss_kib": rss_kib(os.getpid()),
           "heap_kib": info.arena // kib, "in_use_kib": info.uordblks // kib,
           "free_held_kib": info.fordblks // kib, "mmapped_kib": info.hblkhd // kib,
           "traced_kib": tracemalloc.get_traced_memory()[0] // kib, **_pymalloc()}
    if os.environ.get("MALLOC_TRIM") == "1":
        libc.malloc_trim(0)
        row["rss_after_trim_kib"] = rss_kib(os.getpid())
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "malloc.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    if FRAMES:  # TRACEMALLOC_FRAMES=0: only the malloc figures
        tracemalloc.start(FRAMES)
    signal.signal(signal.SIGUSR1, _snapshot)
    signal.signal(signal.SIGUSR2, _malloc_stats)
    sys.argv = ["app", "serve", *sys.argv[1:]]
    from app.cli import main

    main()
