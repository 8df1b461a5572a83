"""Prometheus metrics: one registry per app instance (tests build many apps in one process,
and a process-wide default registry would mix them), served at `GET /metrics`.

What is counted where:
- job transitions, job duration, queue wait, credit captures and releases: JobService.move
  calls `observe_transition` after every successful move;
- provider requests and errors, storage errors, finalize bytes and duration: the driver;
- jobs by state: read from the database on each scrape (so it is right across processes);
- open event streams and events published: read from the broker on each scrape.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from app.db import jobs as jobs_db
from app.jobs.states import FINAL, Status

DURATION_BUCKETS = (5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1200, 1800, 3600)
WAIT_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800)
FINALIZE_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
_MB = 1024 * 1024
BYTES_BUCKETS = (256 * 1024, _MB, 4 * _MB, 16 * _MB, 64 * _MB, 128 * _MB, 256 * _MB, 512 * _MB)
_BEFORE_RUNNING = (Status.PENDING.value, Status.QUEUED.value)
_RUNNING = (Status.PROCESSING.value, Status.FINALIZING.value)


class _BrokerCollector:
    """Reads the broker at scrape time: open streams and events published so far."""

    def __init__(self) -> None:
        self.broker: Any = None

    def describe(self):
        yield GaugeMetricFamily("reelforge_event_streams_open", "")
        yield CounterMetricFamily("reelforge_events_published", "")

    def collect(self):
        broker = self.broker
        yield GaugeMetricFamily(
            "reelforge_event_streams_open", "Open server-sent event streams (one per open page)",
            value=broker.subscriber_count if broker else 0)
        yield CounterMetricFamily(
            "reelforge_events_published",
            "Events queued to streams (one per event per stream)",
            value=broker.published if broker else 0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.jobs = Gauge("reelforge_jobs", "Jobs by state, read from the database on scrape",
                          ["state"], registry=r)
        self.transitions = Counter(
            "reelforge_job_transitions", "Job status changes made by this process",
            ["from", "to"], registry=r)
        self.job_duration = Histogram(
            "reelforge_job_duration_seconds", "From submission to the final state",
            ["template", "provider", "outcome"], buckets=DURATION_BUCKETS, registry=r)
        self.queue_wait = Histogram(
            "reelforge_job_queue_wait_seconds",
            "From submission until the provider starts rendering (or has finished)",
            ["template", "provider"], buckets=WAIT_BUCKETS, registry=r)
        self.provider_requests = Counter(
            "reelforge_provider_requests", "Calls to the video provider, by kind",
            ["provider", "kind"], registry=r)
        self.provider_errors = Counter(
            "reelforge_provider_errors", "Failed calls to the video provider, by kind",
            ["provider", "kind", "error"], registry=r)
        self.storage_errors = Counter(
            "reelforge_storage_errors", "Failed storage calls made by the driver",
            ["operation", "error"], registry=r)
        self.finalize_bytes = Histogram(
            "reelforge_finalize_bytes", "Size of each video downloaded and stored",
            ["template", "provider"], buckets=BYTES_BUCKETS, registry=r)
        self.finalize_duration = Histogram(
            "reelforge_finalize_duration_seconds",
            "Download, store and charge of a finished video",
            ["template", "provider"], buckets=FINALIZE_BUCKETS, registry=r)
        self.credit_captures = Counter(
            "reelforge_credit_captures", "Jobs charged (reservation captured)", registry=r)
        self.credit_releases = Counter(
            "reelforge_credit_releases", "Reservations released (failed or canceled jobs)",
            registry=r)
        self.credits_captured = Counter(
            "reelforge_credits_captured", "Credits charged", registry=r)
        self.credits_released = Counter(
            "reelforge_credits_released", "Credits released back to people", registry=r)
        self._broker = _BrokerCollector()
        r.register(self._broker)
        for status in Status:
            self.jobs.labels(status.value).set(0)

    def attach(self, broker: Any) -> None:
        self._broker.broker = broker

    # -- observations -----------------------------------------------------------------
    def observe_transition(
        self, job: dict[str, Any], before: str | None, credits: str | None
    ) -> None:
        to = job["status"]
        self.transitions.labels(before or "none", to).inc()
        template, provider = job.get("template") or "unknown", job.get("provider") or "unknown"
        created = job.get("created_at")
        if isinstance(created, datetime):
            now = job.get("finished_at") or datetime.now(UTC)
            seconds = max(0.0, (now - created).total_seconds())
            if before in _BEFORE_RUNNING and to in _RUNNING:
                self.queue_wait.labels(template, provider).observe(seconds)
            if to in FINAL:
                self.job_duration.labels(template, provider, to).observe(seconds)
        amount = int(job.get("credits") or 0)
        if credits == "capture":
            self.credit_captures.inc()
            self.credits_captured.inc(amount)
        elif credits == "release":
            self.credit_releases.inc()
            self.credits_released.inc(amount)

    async def refresh(self, db: Any) -> None:
        """Jobs by state, straight from the database."""
        counts = await jobs_db.count_by_status(db)
        for status in Status:
            self.jobs.labels(status.value).set(counts.get(status.value, 0))

    def render(self) -> bytes:
        return _generate_latest(self.registry)


def _token_ok(header: str, token: str) -> bool:
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                              token.encode())


@get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text format; with METRICS_TOKEN set, only for `Authorization: Bearer …`."""
    services = request.app.state.services
    token = services.settings.metrics_token
    if token and not _token_ok(request.headers.get("authorization", ""), token):
        return Response("unauthorized\n", status_code=401, media_type="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    await services.metrics.refresh(services.db)
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})
