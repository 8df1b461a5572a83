"""The server limits glibc's malloc arenas (app/memory.py), unless the operator set it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

PROBE = """
import os, sys
from app.memory import limit_malloc_arenas
done = limit_malloc_arenas()
# what a process started from here (serve --workers, ffmpeg) inherits
child = os.popen("printenv MALLOC_ARENA_MAX").read().strip()
print(done, child)
"""


def probe(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, check=True,
                         capture_output=True, text=True).stdout
    return out.split()


def test_the_server_limits_its_arenas_and_its_children_inherit_the_limit():
    assert probe() == ["True", "2"]


def test_an_operators_setting_is_left_alone():
    assert probe(MALLOC_ARENA_MAX="8") == ["False", "8"]
