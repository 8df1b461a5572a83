"""Storage fixtures shared by the storage test modules: every test runs against the local
files and against S3 (a moto server), each under a fresh key prefix. Import them into a test
module by their function names (with `s3_server_fixture` from tests/fakes/s3_server.py),
as the fixtures are named apart from them."""

from __future__ import annotations

import uuid

import pytest

from app.storage.local import LocalStorage
from tests.fakes.s3_server import S3Server


@pytest.fixture(scope="module", name="s3_storage")
def s3_storage_fixture(s3_server: S3Server):
    """One S3Storage for the module (creating a boto3 client costs about 0.3 s)."""
    store = s3_server.storage()
    yield store
    store.close()


@pytest.fixture(params=["local", "s3"], name="storage")
def storage_fixture(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "media")
    return request.getfixturevalue("s3_storage")


@pytest.fixture(name="prefix")
def prefix_fixture() -> str:
    """A fresh key prefix, so tests sharing the moto bucket never see each other's objects."""
    return f"users/{uuid.uuid4().hex}/library"
