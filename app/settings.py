"""One Settings object, read from the environment (and a `.env` file)."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path

from pydantic import ByteSize, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

FAL_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    data_dir: Path = Path("data")
    database_url: str | None = None
    surrealdb_ns: str = "reelforge"
    surrealdb_db: str = "main"
    surrealdb_user: str | None = None
    surrealdb_pass: str | None = None

    video_provider: str | None = None
    fal_key: str | None = None

    storage: str = "local"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    s3_public_base_url: str | None = None

    public_base_url: str | None = None
    secret_key: str | None = None
    signup_credits: int = Field(default=1000, ge=0)
    host: str = "127.0.0.1"
    port: int = 8000
    fal_webhook_jwks_url: str = FAL_JWKS_URL
    fal_user_id: str | None = None  # when set, webhooks signed for another fal user are refused

    # Job engine knobs (not part of the public contract; defaults are the product's).
    max_active_jobs: int = Field(default=5, ge=1)
    batch_max_rows: int = Field(default=100, ge=1, le=10_000)  # rows one batch may have
    job_deadline_seconds: float = 30 * 60
    max_result_bytes: int = 500 * 1024 * 1024
    driver_concurrency: int = 64
    status_interval: float | None = None  # seconds between status checks; default: provider's
    local_provider_concurrency: int = 2
    lease_seconds: float = Field(default=30.0, ge=1)  # a dead driver's jobs wait this long
    allowed_result_hosts: str | None = None
    fal_timeout: float = Field(default=30.0, gt=0)  # seconds one request to fal may take
    log_format: str = "console"
    allowed_hosts: str | None = None  # comma-separated; default: this host and localhost
    metrics_token: str | None = None
    metrics_port: int | None = None  # /metrics on 127.0.0.1:METRICS_PORT (0: any free port)
    # Addresses (or networks, CIDR) of the reverse proxies in front of the app: only a
    # connection from one of them has its X-Forwarded-For / Forwarded header believed.
    trusted_proxies: str | None = None
    session_max_age: int = Field(default=14 * 24 * 3600, gt=0)  # seconds, renewed on use
    signups_per_hour: int = Field(default=5, ge=1)  # accounts one client address may create
    event_streams_per_person: int = Field(default=10, ge=1)  # open /events, per process
    request_header_timeout: float = Field(default=10.0, gt=0)  # seconds to send the headers
    # Days a finished job's detailed timeline (job_event) is kept; the job and its ledger
    # entries are kept for good. 0 keeps timelines for good too.
    job_timeline_days: float = Field(default=30.0, ge=0)
    storage_quota: ByteSize = Field(default=ByteSize(1024**3), ge=0)  # library bytes per person

    # Backups (app/backup/, docs/OPERATIONS.md).
    backup_dir: Path | None = None  # default {DATA_DIR}/backups
    backup_interval_hours: float = Field(default=24.0, ge=0)  # 0: no scheduled backups
    backup_keep: int = Field(default=7, ge=1)  # newest backups kept in each place
    backup_s3_prefix: str | None = None  # also into S3_BUCKET under this prefix
    backup_local: bool = True  # false (with BACKUP_S3_PREFIX): only in the bucket
    backup_token: str | None = None  # `python -m app backup` asks a running server with it

    @property
    def backups_path(self) -> Path:
        return self.backup_dir or self.data_dir / "backups"

    @property
    def db_url(self) -> str:
        return self.database_url or f"surrealkv://{self.data_dir.resolve()}/db"

    @property
    def is_embedded(self) -> bool:
        return self.db_url.startswith(("surrealkv://", "mem://", "memory", "file://", "rocksdb://"))

    @property
    def provider_name(self) -> str:
        return self.video_provider or ("fal" if self.fal_key else "local")

    @property
    def host_allowlist(self) -> list[str]:
        if self.allowed_hosts:
            return [h.strip() for h in self.allowed_hosts.split(",") if h.strip()]
        from urllib.parse import urlsplit

        hosts = {"localhost", "127.0.0.1", "[::1]", self.host}
        if self.public_base_url:
            hosts.add(urlsplit(self.public_base_url).hostname or "localhost")
        return sorted(h for h in hosts if h not in ("0.0.0.0", "::"))  # noqa: S104

    @cached_property
    def trusted_proxy_networks(self) -> tuple:
        from app.web.client_address import parse_networks

        return parse_networks(self.trusted_proxies or "")

    @property
    def secure_cookies(self) -> bool:
        return bool(self.public_base_url and self.public_base_url.startswith("https://"))

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def webhook_url(self) -> str | None:
        if not self.public_base_url:
            return None
        return self.public_base_url.rstrip("/") + "/api/webhooks/fal"

    @cached_property
    def session_secret(self) -> bytes:
        """SECRET_KEY, or one generated once into DATA_DIR and reused after."""
        if self.secret_key:
            raw = self.secret_key
        else:
            path = self.data_dir / "secret_key"
            if not path.exists():
                self.data_dir.mkdir(parents=True, exist_ok=True)
                path.write_text(secrets.token_hex(32))
                path.chmod(0o600)
            raw = path.read_text().strip()
        # Litestar's cookie sessions want exactly 16, 24 or 32 bytes.
        import hashlib

        return hashlib.sha256(raw.encode()).digest()


def get_settings() -> Settings:
    return Settings()
