"""Prometheus metrics: one registry per app instance (tests build many apps in one process,
and a process-wide default registry would mix them).

Where they are served: `GET /metrics` on the app only when METRICS_TOKEN is set (and then
only to `Authorization: Bearer <token>`); with METRICS_PORT, also on 127.0.0.1:METRICS_PORT
by a small server of their own (`serve_metrics_port`, in the app's lifespan). Otherwise
`/metrics` is the same 404 as an unknown route.

What is counted where:
- job transitions, job duration, queue wait, credit captures and releases: JobService.move
  calls `observe_transition` after every successful move;
- provider requests and errors, storage errors, finalize bytes and duration: the driver;
- jobs by state: the `job_count` counters, which a database event keeps in the same
  transaction as every change of a job's status (scripts/schema.surql), read on each
  scrape: right across processes, and a scrape reads a few dozen records, not every job;
- open event streams and events published: read from the broker on each scrape;
- requests sent to the database, reads and writes: read from the connection on each scrape.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from litestar import Litestar, Request, Response, get
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_wsgi_app,
)
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer

from app.db.records import VideoJob
from app.jobs.states import FINAL, Status
from app.observability.logging import get_logger
from app.settings import Settings

log = get_logger("reelforge.metrics")

DURATION_BUCKETS = (5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1200, 1800, 3600)
WAIT_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800)
FINALIZE_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
_MB = 1024 * 1024
BYTES_BUCKETS = (256 * 1024, _MB, 4 * _MB, 16 * _MB, 64 * _MB, 128 * _MB, 256 * _MB, 512 * _MB)
_BEFORE_RUNNING = (Status.PENDING.value, Status.QUEUED.value)
_RUNNING = (Status.PROCESSING.value, Status.FINALIZING.value)


class _LiveCollector:
    """Reads the broker and the database connection at scrape time: open streams, events
    published so far, and the requests sent to the database."""

    def __init__(self) -> None:
        self.broker: Any = None
        self.db: Any = None

    def describe(self):
        yield GaugeMetricFamily("reelforge_event_streams_open", "")
        yield CounterMetricFamily("reelforge_events_published", "")
        yield CounterMetricFamily("reelforge_db_requests", "", labels=["kind"])

    def collect(self):
        db = self.db
        requests = CounterMetricFamily(
            "reelforge_db_requests",
            "Requests sent to the database by this process, by kind (read or write)",
            labels=["kind"])
        requests.add_metric(["read"], db.reads if db else 0)
        requests.add_metric(["write"], db.writes if db else 0)
        yield requests
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
        self._live = _LiveCollector()
        r.register(self._live)
        for status in Status:
            self.jobs.labels(status.value).set(0)

    def attach(self, broker: Any, db: Any = None) -> None:
        self._live.broker = broker
        self._live.db = db

    # -- observations -----------------------------------------------------------------
    def observe_transition(
        self, job: VideoJob, before: str | None, credits: str | None
    ) -> None:
        to = job.status.value
        self.transitions.labels(before or "none", to).inc()
        template, provider = job.template or "unknown", job.provider or "unknown"
        seconds = max(0.0, ((job.finished_at or datetime.now(UTC))
                            - job.created_at).total_seconds())
        if before in _BEFORE_RUNNING and to in _RUNNING:
            self.queue_wait.labels(template, provider).observe(seconds)
        if job.status in FINAL:
            self.job_duration.labels(template, provider, to).observe(seconds)
        amount = job.credits
        if credits == "capture":
            self.credit_captures.inc()
            self.credits_captured.inc(amount)
        elif credits == "release":
            self.credit_releases.inc()
            self.credits_released.inc(amount)

    async def refresh(self, db: Any) -> None:
        """Jobs by state, from the database's counters."""
        counts = await job_counts(db)
        for status in Status:
            self.jobs.labels(status.value).set(counts.get(status.value, 0))

    def render(self) -> bytes:
        return _generate_latest(self.registry)


# The counters only (at most 8 shards per state), never the video_job table: no GROUP BY.
JOB_COUNTS_QUERY = "SELECT status, n FROM job_count"


async def job_counts(db: Any) -> dict[str, int]:
    """Jobs by state from `job_count`, which the `job_count` event on video_job keeps
    (scripts/schema.surql): several records per state (shards, so that concurrent writers
    on a server rarely touch the same one), summed here."""
    counts: dict[str, int] = {}
    for row in await db.read_one(JOB_COUNTS_QUERY) or []:
        counts[row["status"]] = counts.get(row["status"], 0) + int(row["n"])
    return counts


def metrics_routes(settings: Settings) -> list[Any]:
    """`/metrics` on the app only with METRICS_TOKEN. Without it the route is not there at
    all, so every method gets exactly the unknown route's 404 (a handler answering 404 would
    differ: route middleware such as CSRF runs for it, and other methods would get 405)."""
    return [metrics_endpoint] if settings.metrics_token else []


def _token_ok(header: str, token: str) -> bool:
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                              token.encode())


@get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text format, only for `Authorization: Bearer <METRICS_TOKEN>`."""
    services = request.app.state.services
    token = services.settings.metrics_token
    if not token or not _token_ok(request.headers.get("authorization", ""), token):
        return Response("unauthorized\n", status_code=401, media_type="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    await services.metrics.refresh(services.db)
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})


# -- METRICS_PORT: /metrics on 127.0.0.1 only ----------------------------------------------

_LOCAL_HOSTS = ("127.0.0.1", "localhost")
SCRAPE_TIMEOUT = 10.0


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        """No access lines on stderr: scrapes are frequent and the app logs its own way."""


def metrics_wsgi_app(metrics: Metrics, db: Any, loop: asyncio.AbstractEventLoop):
    """`GET /metrics` from this app's registry; every other path is 404. The job counts are
    read on the app's event loop (the database connection lives there), the page is
    rendered in the server's thread."""
    render = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        host = (environ.get("HTTP_HOST") or "127.0.0.1").rsplit(":", 1)[0]
        if environ.get("PATH_INFO") != "/metrics" or host not in _LOCAL_HOSTS:
            # A Host check too: a page a browser on this machine loads cannot read the
            # metrics through a DNS name rebound to 127.0.0.1.
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        try:
            asyncio.run_coroutine_threadsafe(metrics.refresh(db), loop).result(SCRAPE_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - a failed scrape says so and logs why
            log.warning("metrics.scrape_failed", error=str(exc) or type(exc).__name__)
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"metrics unavailable\n"]
        return render(environ, start_response)

    return app


def start_metrics_server(metrics: Metrics, db: Any, port: int,
                         loop: asyncio.AbstractEventLoop) -> ThreadingWSGIServer:
    """Serve /metrics on 127.0.0.1:port (0 picks a free port) from a daemon thread."""
    server = make_server("127.0.0.1", port, metrics_wsgi_app(metrics, db, loop),
                         ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-port", daemon=True).start()
    return server


@asynccontextmanager
async def serve_metrics_port(app: Litestar) -> AsyncIterator[None]:
    """Lifespan part (after the one that opens the services): the METRICS_PORT server."""
    services = app.state.services
    port = services.settings.metrics_port
    if port is None:
        yield
        return
    try:
        server = start_metrics_server(services.metrics, services.db, port,
                                      asyncio.get_running_loop())
    except OSError as exc:
        # `serve --workers N`: the first worker to start holds the port, the others serve
        # without it (their own counters are not exposed). A busy port must not stop the app.
        log.warning("metrics.port_unavailable", port=port, error=str(exc))
        yield
        return
    app.state.metrics_address = server.server_address
    log.info("metrics.listening", address=f"http://127.0.0.1:{server.server_address[1]}/metrics")
    try:
        yield
    finally:
        await asyncio.to_thread(server.shutdown)  # waits for serve_forever to return
        server.server_close()
