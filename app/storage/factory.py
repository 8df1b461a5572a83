"""Pick the storage backend named by the STORAGE setting."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.storage.base import Storage

if TYPE_CHECKING:
    from app.settings import Settings


def make_storage(settings: Settings) -> Storage:
    """`STORAGE=local` → files under `{DATA_DIR}/media`; `STORAGE=s3` → the S3_* bucket."""
    kind = (settings.storage or "").strip().lower()
    if kind == "local":
        from app.storage.local import LocalStorage

        return LocalStorage(settings.media_dir)
    if kind == "s3":
        if not settings.s3_bucket:
            raise ValueError("STORAGE=s3 needs S3_BUCKET")
        from app.storage.s3 import S3Storage  # imported lazily: only this path needs boto3

        return S3Storage(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.aws_access_key_id,
            secret_access_key=settings.aws_secret_access_key,
            public_base_url=settings.s3_public_base_url,
        )
    raise ValueError(f"STORAGE must be 'local' or 's3', not {settings.storage!r}")
