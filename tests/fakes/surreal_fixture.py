"""Fixtures for tests that need a SurrealDB *server* (several processes, a `ws://` URL).

`surreal_server_url` (session scope): `SURREALDB_TEST_URL` when set (a real server, which
must accept the root user root/root, e.g. `surreal start --user root --pass root`);
otherwise the stand-in in `tests/fakes/surreal_server.py`, started once as a subprocess and
stopped (by its PID) at the end of the session.

`surreal_db_name` (function scope): a database name of its own for each test, so tests
sharing one server never see each other's data.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 30.0


def start_surreal_standin(*args: str, port: int = 0) -> tuple[subprocess.Popen[str], str]:
    """Start the stand-in server (extra CLI args allowed) on `port` (0: any free one);
    returns the process and its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.surreal_server", "--host", "127.0.0.1",
         "--port", str(port), *args],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0 and sel.select(left):
            line = proc.stdout.readline()
            if line.startswith("READY "):
                return proc, line.split()[1]
            if not line:  # the process ended before it was ready
                break
    stop_surreal_standin(proc)
    raise RuntimeError(f"the SurrealDB stand-in did not start (exit code {proc.returncode})")


def stop_surreal_standin(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM to this PID only
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture(scope="session")
def surreal_server_url() -> Iterator[str]:
    if url := os.environ.get("SURREALDB_TEST_URL"):
        yield url
        return
    proc, url = start_surreal_standin()
    try:
        yield url
    finally:
        stop_surreal_standin(proc)


@pytest.fixture
def surreal_db_name() -> str:
    return f"test_{uuid.uuid4().hex[:16]}"
