#!/usr/bin/env bash
# Set up (first time) and run the whole test suite: lint, type check (strict on app/db,
# app/jobs, app/web), unit, integration and the browser tests in Chromium (installed from
# the system's packages when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -x /usr/bin/chromium ]; then
  echo "Installing Chromium from the system packages (for the browser tests)" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/ruff check .
.venv/bin/mypy  # files and strictness: [tool.mypy] in pyproject.toml
exec .venv/bin/python -m pytest "$@"
