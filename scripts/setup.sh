#!/usr/bin/env bash
# Creates .venv and installs the locked dependencies and the app itself. Idempotent: a
# second run only checks. Used by scripts/run.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "Creating the virtual environment in .venv" >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ requirements.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # A line per step and pip's own output (package by package): the first install takes
  # a couple of minutes and should never look stuck.
  packages=$(grep -cE '^[A-Za-z0-9]' requirements.lock || true)
  echo "[1/3] Updating pip" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  echo "[2/3] Installing $packages locked dependencies (requirements.lock; about 2 minutes the first time)" >&2
  .venv/bin/python -m pip install --disable-pip-version-check --progress-bar on -r requirements.lock
  echo "[3/3] Installing Reelforge itself (editable)" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  touch "$stamp"
  echo "Set-up done" >&2
fi
