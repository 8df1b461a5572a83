#!/usr/bin/env bash
# The full contract-fuzzing campaign (docs/RELIABILITY.md): schemathesis against the app's
# own OpenAPI document on a live server, FUZZ_EXAMPLES examples per operation and generation
# mode (default 400: well over 2,000 requests). Figures go to bench-results/schema_fuzz.json.
# The test suite runs the same test with 12 examples.
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZ_EXAMPLES="${FUZZ_EXAMPLES:-400}"
export FUZZ_REPORT="${FUZZ_REPORT:-bench-results/schema_fuzz.json}"
exec .venv/bin/python -m pytest tests/integration/test_schema_fuzz.py -q -p no:cacheprovider \
  -o timeout=1800 "$@"
