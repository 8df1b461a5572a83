"""Shared fixtures. The environment is set before the app is imported (DESIGN's house
rule), so no test ever reads a developer's .env or data directory by accident."""

from __future__ import annotations

import os
import tempfile

_BASE = tempfile.mkdtemp(prefix="reelforge-tests-")
os.environ.update({
    "DATA_DIR": _BASE,
    "DATABASE_URL": "mem://",
    "VIDEO_PROVIDER": "local",
    "STORAGE": "local",
    "SECRET_KEY": "test-secret-key",
    "ALLOWED_HOSTS": "testserver.local,127.0.0.1,localhost",
    "SIGNUP_CREDITS": "1000",
    "SIGNUPS_PER_HOUR": "10000",  # many accounts from 127.0.0.1; limit tests set their own
})
for var in ("FAL_KEY", "PUBLIC_BASE_URL", "S3_BUCKET", "S3_ENDPOINT_URL"):
    os.environ.pop(var, None)

import pytest  # noqa: E402
from litestar.testing import AsyncTestClient  # noqa: E402

from app.db.connection import Database  # noqa: E402
from app.db.schema import apply_schema  # noqa: E402
from app.main import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402
from tests.helpers import Account  # noqa: E402

pytest_plugins = [
    "tests.fakes.s3_server", "tests.fakes.s3_faults", "tests.fakes.fal_server",
    "tests.fakes.live_server", "tests.fakes.surreal_fixture",
]


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings for one test: its own data dir and a fresh in-memory database."""
    return Settings(data_dir=tmp_path, database_url="mem://")


@pytest.fixture
async def db(tmp_path):
    """A fresh in-memory database with the schema applied, without the app around it."""
    database = Database(Settings(data_dir=tmp_path, database_url="mem://"))
    await database.connect()
    await apply_schema(database)
    yield database
    await database.close()


@pytest.fixture
async def client(settings):
    """The whole app (lifespan, driver and all) behind an in-process HTTP client."""
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as c:
        yield c


@pytest.fixture
def services(client):
    return client.app.state.services


@pytest.fixture
async def alice(client) -> Account:
    return await Account.signup(client, "alice@example.com")


@pytest.fixture
async def bob(client) -> Account:
    """A second person on the same running app, with cookies of their own (entering a
    second AsyncTestClient would run the lifespan again, with a fresh database)."""
    other = AsyncTestClient(client.app, base_url=str(client.base_url))
    other.blocking_portal = client.blocking_portal
    return await Account.signup(other, "bob@example.com")
