"""`python -m app serve` with tracemalloc on: each SIGUSR1 writes a snapshot.

For finding what grows in the app's own memory (`scripts/soak.py --tracemalloc DIR` starts
the server through this and signals it after the warm-up and at the end of the load):

    TRACEMALLOC_DIR=/tmp/snaps python scripts/bench/traced_serve.py
    python scripts/bench/tracemalloc_diff.py /tmp/snaps/snap-1.pickle /tmp/snaps/snap-2.pickle
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

FRAMES = int(os.environ.get("TRACEMALLOC_FRAMES", "6"))
OUT = Path(os.environ.get("TRACEMALLOC_DIR", "bench-results/tracemalloc"))
_numbers = itertools.count(1)


def _snapshot(_signum: int, _frame: object) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"snap-{next(_numbers)}.pickle"
    tracemalloc.take_snapshot().dump(str(path))
    print(f"tracemalloc snapshot written to {path}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    tracemalloc.start(FRAMES)
    signal.signal(signal.SIGUSR1, _snapshot)
    sys.argv = ["app", "serve", *sys.argv[1:]]
    from app.cli import main

    main()
