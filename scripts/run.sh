#!/usr/bin/env bash
# Set up (first time) and run Reelforge on its embedded defaults: embedded SurrealDB in
# ./data, local file storage, and the local ffmpeg renderer unless FAL_KEY is set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m app serve "$@"
