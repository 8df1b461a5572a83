"""The one provider of services for code that runs outside a request (driver, CLI,
stream) and for request handlers alike: built once per app (or CLI command)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.db.connection import Database
from app.db.schema import apply_schema
from app.db.templates import sync_catalogue
from app.events.broker import Broker
from app.events.feed import FeedFollower
from app.events.notifier import Notifier
from app.jobs.batches import BatchService
from app.jobs.driver import Driver
from app.jobs.service import JobService
from app.observability.metrics import Metrics
from app.providers.base import VideoProvider
from app.settings import Settings
from app.storage.base import Storage
from app.storage.factory import make_storage
from app.web.render import Fragments, make_environment


def make_provider(settings: Settings) -> VideoProvider:
    name = settings.provider_name
    if name == "fal":
        from app.providers.fal import FalProvider

        hosts = [h.strip() for h in (settings.allowed_result_hosts or "").split(",") if h.strip()]
        return FalProvider(key=settings.fal_key, allowed_result_hosts=hosts or None,
                           timeout=settings.fal_timeout,
                           connections=settings.driver_concurrency)
    if name == "local":
        from app.providers.local import LocalProvider

        return LocalProvider(settings.data_dir / "renders",
                             concurrency=settings.local_provider_concurrency)
    raise ValueError(f"VIDEO_PROVIDER must be 'fal' or 'local', not {name!r}")


@dataclass
class Services:
    settings: Settings
    db: Database
    storage: Storage
    broker: Broker = field(default_factory=Broker)
    env: Any = field(default_factory=make_environment)
    provider: VideoProvider | None = None
    jobs: JobService | None = None
    batches: BatchService | None = None
    driver: Driver | None = None
    notifier: Notifier | None = None
    webhooks: Any = None
    feed: FeedFollower | None = None  # against a server: other processes' changes
    metrics: Metrics = field(default_factory=Metrics)  # this app's own registry

    @property
    def fragments(self) -> Fragments:
        return Fragments(self.env)


async def open_services(
    settings: Settings, *, with_driver: bool = True, env: Any = None
) -> Services:
    """Connect, apply the schema, load the catalogue, and wire the job engine."""
    db = Database(settings)
    await db.connect()
    try:
        await apply_schema(db)
        await sync_catalogue(db)
        storage = make_storage(settings)
        services = Services(settings=settings, db=db, storage=storage,
                            env=env or make_environment())
        services.broker.per_person = settings.event_streams_per_person
        services.notifier = Notifier(db, services.broker, services.fragments, storage)
        services.jobs = JobService(db, settings, publish=services.notifier.publish,
                                   publish_batch=services.notifier.publish_batch_made)
        services.jobs.observe = services.metrics.observe_transition
        services.batches = BatchService(services.jobs)
        services.metrics.attach(services.broker, services.db)
        if with_driver and not db.embedded:
            services.feed = FeedFollower(db, services.notifier, services.broker)
            await services.feed.start()
        if with_driver:
            services.provider = make_provider(settings)
            services.driver = Driver(
                db, services.jobs, services.provider, storage,
                work_dir=settings.data_dir / "tmp", webhook_url=settings.webhook_url,
                concurrency=settings.driver_concurrency,
                max_result_bytes=settings.max_result_bytes,
                status_interval=settings.status_interval, metrics=services.metrics,
                lease_seconds=settings.lease_seconds,
                timeline_days=settings.job_timeline_days,
                per_person=settings.max_active_jobs,
            )
            services.jobs.wake_driver = services.driver.wake
            services.jobs.cancel_at_provider = services.driver.cancel_later
            await services.driver.start()
        if settings.provider_name == "fal":
            from app.providers.fal_webhook import FalWebhookVerifier

            services.webhooks = FalWebhookVerifier(settings.fal_webhook_jwks_url,
                                                   user_id=settings.fal_user_id)
    except BaseException:
        await db.close()
        raise
    return services


async def close_services(services: Services) -> None:
    services.broker.close_all()
    if services.feed:
        await services.feed.stop()
    if services.driver:
        await services.driver.stop()
    if services.provider:
        await services.provider.aclose()
    await services.db.close()
