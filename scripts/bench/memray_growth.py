"""What grew in a server's memory between two moments, from a memray capture.

tracemalloc sees only Python's own objects; memray also sees what C extensions and the
interpreter allocate with malloc or mmap (uvloop's buffers, OpenSSL, the SDK's decoder,
pymalloc's arenas), each under the Python stack that asked for it. For each stack this
sums the bytes still allocated at the two snapshots nearest the window's ends, and prints
the stacks that grew most:

    .venv/bin/pip install memray       # not one of the app's dependencies
    .venv/bin/python scripts/soak.py --server --memray /tmp/soak.bin --out /tmp/soak.json
    .venv/bin/python scripts/bench/memray_growth.py /tmp/soak.bin --soak /tmp/soak.json

Without `--soak` (which gives the window the soak measured, after its warm-up) the window
is `--from`/`--to` seconds from the capture's start.
"""

from __future__ import annotations

import argparse
import bisect
import json
from collections import defaultdict
from pathlib import Path

from memray import FileReader

MB = 1024 * 1024


def alive_at(intervals, snapshot: int) -> int:
    return sum(i.n_bytes for i in intervals
               if i.allocated_before_snapshot <= snapshot
               and (i.deallocated_before_snapshot is None
                    or i.deallocated_before_snapshot > snapshot))


def describe(record, frames: int) -> str:
    """The innermost frames, and the innermost one of the app's own, if further out."""
    stack = record.stack_trace()
    shown = stack[:frames]
    lines = [f"{fn} {Path(file).name}:{line}" for fn, file, line in shown]
    own = next((frame for frame in stack
                if "/app/" in frame[1] and "site-packages" not in frame[1]), None)
    if own and own not in shown:
        fn, file, line = own
        lines.append(f"… app/{file.split('/app/', 1)[1]}:{line} {fn}")
    return "\n      ".join(lines) or "(no Python stack: the interpreter or a thread of C)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture")
    ap.add_argument("--soak", help="the soak's JSON: its measured window")
    ap.add_argument("--from", dest="t_from", type=float, default=60.0)
    ap.add_argument("--to", dest="t_to", type=float, default=None)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--frames", type=int, default=4)
    args = ap.parse_args()

    reader = FileReader(args.capture)
    snaps = list(reader.get_memory_snapshots())
    times = [s.time / 1000 for s in snaps]  # ms since the epoch → s
    if args.soak:
        t_from, t_to = json.loads(Path(args.soak).read_text())["measured_window_unix"]
    else:
        t_from = times[0] + args.t_from
        t_to = times[-1] if args.t_to is None else times[0] + args.t_to
    a = min(bisect.bisect_left(times, t_from), len(snaps) - 1)
    b = min(bisect.bisect_left(times, t_to), len(snaps) - 1)
    print(f"snapshots {a} → {b} of {len(snaps)} ({times[b] - times[a]:.0f} s): "
          f"RSS {snaps[a].rss / MB:.1f} → {snaps[b].rss / MB:.1f} MB, "
          f"tracked heap {snaps[a].heap / MB:.1f} → {snaps[b].heap / MB:.1f} MB")

    growth: dict[int, int] = defaultdict(int)
    where: dict[int, object] = {}
    for record in reader.get_temporal_allocation_records(merge_threads=True):
        grew = alive_at(record.intervals, b) - alive_at(record.intervals, a)
        if grew:
            growth[record.stack_id] += grew
            where.setdefault(record.stack_id, record)
    total = sum(growth.values())
    print(f"tracked allocations alive grew by {total / MB:+.2f} MB; the largest:")
    for stack_id, grew in sorted(growth.items(), key=lambda kv: -abs(kv[1]))[:args.top]:
        print(f"  {grew / MB:+7.2f} MB  {describe(where[stack_id], args.frames)}")


if __name__ == "__main__":
    main()
