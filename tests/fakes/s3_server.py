"""A real S3 API for tests: moto's server on 127.0.0.1, spoken to over HTTP by boto3.

Use from a test module (the fixture is session-scoped; one moto server per test process).
Import the fixture under its function name so that ruff does not see test parameters named
`s3_server` as redefinitions (F811):

    from tests.fakes.s3_server import s3_server_fixture  # noqa: F401

    def test_something(s3_server, monkeypatch):
        for name, value in s3_server.env().items():
            monkeypatch.setenv(name, value)
        storage = s3_server.storage()          # an S3Storage on the shared bucket

Tests share one bucket, so use unique keys (e.g. a uuid in the prefix).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.config import Config

REGION = "us-east-1"
ACCESS_KEY_ID = "testing-access-key"
SECRET_ACCESS_KEY = "testing-secret-key"  # noqa: S105 - a dummy for moto
BUCKET = "reelforge-test"


@dataclass(frozen=True)
class S3Server:
    """Where an S3 API listens and the bucket created on it."""

    endpoint_url: str
    bucket: str = BUCKET
    region: str = REGION
    access_key_id: str = ACCESS_KEY_ID
    secret_access_key: str = SECRET_ACCESS_KEY

    def env(self) -> dict[str, str]:
        """Environment variables that point the app's settings at this server."""
        return {
            "STORAGE": "s3",
            "S3_BUCKET": self.bucket,
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }

    def storage(self, **kwargs: Any):
        """An `S3Storage` on this server's bucket; kwargs override constructor arguments."""
        from app.storage.s3 import S3Storage

        args: dict[str, Any] = {
            "bucket": self.bucket,
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
        }
        args.update(kwargs)
        return S3Storage(**args)

    def client(self):
        """A plain boto3 client for assertions behind the storage layer's back."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )


_lock = threading.Lock()
_shared: S3Server | None = None


def shared_s3_server() -> S3Server:
    """Start moto once per process (daemon thread, stopped at exit) and create the bucket."""
    global _shared
    with _lock:
        if _shared is None:
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            atexit.register(server.stop)
            host, port = server.get_host_and_port()
            s3 = S3Server(endpoint_url=f"http://{host}:{port}")
            s3.client().create_bucket(Bucket=s3.bucket)
            _shared = s3
        return _shared


@pytest.fixture(scope="session", name="s3_server")
def s3_server_fixture() -> Iterator[S3Server]:
    """A moto S3 server over HTTP with `bucket` created; `.env()` gives STORAGE=s3 settings."""
    yield shared_s3_server()


s3_server = s3_server_fixture  # same fixture; importing this name makes ruff report F811
