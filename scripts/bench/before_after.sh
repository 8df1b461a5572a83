#!/usr/bin/env bash
# Every benchmark of docs/BENCHMARKS.md §7, on the code at REV and on the working tree's
# HEAD, back to back (each pair before, then after), on this machine:
#
#   bash scripts/bench/before_after.sh 6037c75 [OUT]      # about 75 minutes
#
# Each tree runs its own scripts (both unpacked with git archive under OUT), except the
# event-latency run, which needs today's sse_memory.py and harness.py in the old tree too.
# Figures go to OUT/<benchmark>-<before|after>.json, logs beside them, and a line per run
# (start, end, exit status, load average) to OUT/progress.
set -uo pipefail
REV=${1:?usage: before_after.sh REV [OUT]}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${2:-$ROOT/bench-results/before-after}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
PY=$ROOT/.venv/bin/python

unpack() {  # dir rev
  rm -rf "$1" && mkdir -p "$1" && git -C "$ROOT" archive "$2" | tar -x -C "$1"
}
unpack "$OUT/before" "$REV"
unpack "$OUT/after" HEAD
unpack "$OUT/before-sse" "$REV"
cp "$ROOT/scripts/bench/sse_memory.py" "$ROOT/scripts/bench/harness.py" "$OUT/before-sse/scripts/bench/"

run() {  # name tree script args...
  local name=$1 tree=$2
  shift 2
  echo "$(date -u +%H:%M:%S) start $name load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/progress"
  (cd "$tree" && PYTHONPATH=$tree "$PY" "$@" > "$OUT/$name.log" 2>&1)
  echo "$(date -u +%H:%M:%S) end $name exit $? load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/progress"
}
pair() {  # name script args... (the old tree first)
  local name=$1 before=$OUT/before
  shift
  [ "$name" = sse ] && before=$OUT/before-sse
  run "$name-before" "$before" "$@" --json "$OUT/$name-before.json"
  run "$name-after" "$OUT/after" "$@" --json "$OUT/$name-after.json"
}
pair submit scripts/bench/submit_latency.py
pair sse scripts/bench/sse_memory.py -n 10000 --variants app
pair finalize scripts/bench/finalize_throughput.py
pair driver scripts/bench/driver_scale.py
run soak-before "$OUT/before" scripts/soak.py --out "$OUT/soak-before.json"
run soak-after "$OUT/after" scripts/soak.py --out "$OUT/soak-after.json"
run soak-server-after "$OUT/after" scripts/soak.py --server --out "$OUT/soak-server-after.json"
run status-check-cost "$OUT/after" scripts/bench/status_check_cost.py --json "$OUT/status-check-cost.json"
echo "$(date -u +%H:%M:%S) done" >> "$OUT/progress"
