"""Fixtures of the HTTP-layer tests."""

from __future__ import annotations

import pytest

from tests.integration.api_support import running_app


@pytest.fixture
async def idle(settings):
    """The app with its driver stopped: submitted jobs stay pending (nothing completes or
    fails behind the test's back; a test moves them itself)."""
    async with running_app(settings, idle=True) as client:
        yield client
