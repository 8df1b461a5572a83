"""What grew between two tracemalloc snapshots of the server (see traced_serve.py).

    python scripts/bench/tracemalloc_diff.py BEFORE.pickle AFTER.pickle [--top 25]
"""

from __future__ import annotations

import argparse
import tracemalloc

# the tracer's own bookkeeping is not the app's
IGNORE = [tracemalloc.Filter(False, tracemalloc.__file__),
          tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
          tracemalloc.Filter(False, "<unknown>")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--by", default="lineno", choices=["lineno", "traceback", "filename"])
    args = ap.parse_args()
    before = tracemalloc.Snapshot.load(args.before).filter_traces(IGNORE)
    after = tracemalloc.Snapshot.load(args.after).filter_traces(IGNORE)
    total = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    print(f"traced memory grew by {total / 1e6:.1f} MB")
    for stat in after.compare_to(before, args.by)[: args.top]:
        print(f"{stat.size_diff / 1e6:+8.2f} MB {stat.count_diff:+9,d} blocks  "
              f"({stat.size / 1e6:.1f} MB now)")
        for line in stat.traceback.format()[-12:]:
            print("    " + line)


if __name__ == "__main__":
    main()
