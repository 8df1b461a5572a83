"""create_app(): the Litestar application, its pages, API, stream and background driver."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response
from litestar.config.csrf import CSRFConfig
from litestar.exceptions import HTTPException, NotAuthorizedException, NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.static_files import create_static_files_router
from litestar.status_codes import (
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.template.config import TemplateConfig

from app.backup.service import scheduled_backups
from app.backup.web import BackupController
from app.db.connection import ConnectionLost
from app.events.stream import events
from app.observability.logging import configure_logging, get_logger, secrets_of
from app.observability.metrics import metrics_routes, serve_metrics_port
from app.observability.requests import log_request
from app.services import close_services, open_services
from app.settings import Settings, get_settings
from app.web.account import AccountController
from app.web.admin import AdminController, hide_admin_routes
from app.web.api import ApiController
from app.web.auth import LoginThrottle
from app.web.batch_pages import BatchPageController
from app.web.batch_views import batch_rows
from app.web.batches import BatchController
from app.web.favicon import favicon
from app.web.health import health
from app.web.hosts import AllowedHosts
from app.web.media import media
from app.web.pages import PageController
from app.web.render import STATIC_DIR, make_environment
from app.web.security_headers import security_headers
from app.web.sessions import COOKIE as SESSION_COOKIE
from app.web.sessions import STORE_NAME, DatabaseSessionStore, SessionConfig
from app.web.webhooks import fal_webhook

log = get_logger("reelforge")


class ReelforgeApp(Litestar):
    """Litestar with the request log around everything it serves (see
    app/observability/requests.py for why it wraps the whole app)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        await log_request(super().__call__, scope, receive, send)


def _wants_html(request: Request) -> bool:
    path = request.url.path
    return not path.startswith(("/api/", "/media/", "/events", "/health", "/schema")) and (
        "text/html" in request.headers.get("accept", "")
    )


def _error_page(request: Request, status: int, title: str, message: str,
                headers: dict[str, str] | None = None) -> Response:
    return Template(template_name="pages/error.html", status_code=status, headers=headers,
                    context={"user": None, "status": status, "title": title,
                             "message": message})  # type: ignore[return-value]


def _http_error(request: Request, exc: HTTPException) -> Response:
    exc = hide_admin_routes(request, exc)
    if isinstance(exc, NotFoundException) and _wants_html(request):
        return _error_page(request, 404, "Page not found",
                           "The page you were looking for isn't here.")
    if isinstance(exc, NotAuthorizedException):
        return Response({"error": "not_signed_in", "message": "Sign in first"}, status_code=401)
    body = {"error": _code(exc.status_code), "message": exc.detail}
    if getattr(exc, "extra", None):
        body["detail"] = exc.extra
    return Response(body, status_code=exc.status_code, headers=exc.headers)


def _code(status: int) -> str:
    return {400: "invalid", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
            413: "too_large", 429: "too_many_requests"}.get(status, "error")


def _server_error(request: Request, exc: Exception) -> Response:
    log.error("http.unhandled_error", method=request.method, path=request.url.path,
              exc_info=exc)
    if _wants_html(request):
        return _error_page(request, 500, "Something went wrong",
                           "We couldn't finish that. Please try again in a moment.")
    return Response({"error": "internal_error", "message": "Something went wrong"},
                    status_code=HTTP_500_INTERNAL_SERVER_ERROR)


RETRY_AFTER = "5"  # seconds: a dropped database connection is opened again by the next query


def _database_unreachable(request: Request, exc: ConnectionLost) -> Response:
    """The database could not be reached (or the connection dropped mid-request): not the
    caller's fault, and worth a retry. Each write is one transaction, wholly done or not at
    all; a submission retried with its Idempotency-Key is made once."""
    log.warning("http.database_unreachable", method=request.method, path=request.url.path,
                error=str(exc))
    headers = {"Retry-After": RETRY_AFTER}
    if _wants_html(request):
        return _error_page(request, 503, "We'll be right back",
                           "We couldn't reach our database just now. Please try again in "
                           "a few seconds.", headers)
    return Response({"error": "unavailable",
                     "message": "The database is unreachable just now; try again in a few "
                                "seconds"},
                    status_code=HTTP_503_SERVICE_UNAVAILABLE, headers=headers)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    configure_logging(settings.log_format,
                      secrets=[*secrets_of(settings), settings.session_secret.hex()])
    env = make_environment()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.services = await open_services(settings, env=env)
        session_store.db = app.state.services.db
        app.state.login_throttle = LoginThrottle(app.state.services.db)
        # The services, templates and modules live as long as the process: take them out
        # of the collector's generations, so full collections do not walk them again and
        # again; the broker does the same for open event streams (app/events/broker.py).
        gc.collect()
        gc.freeze()
        app.state.services.broker.freeze_gc = True
        try:
            yield
        finally:
            await close_services(app.state.services)

    session_store = DatabaseSessionStore()
    sessions = SessionConfig(
        key=SESSION_COOKIE, httponly=True, samesite="lax",
        secure=settings.secure_cookies, max_age=settings.session_max_age,
        renew_on_access=True, store=STORE_NAME,
        # No session is read for static files, the icon, the health check or the metrics.
        exclude=["^/static/", "^/health$", "^/metrics$", "^/favicon.ico$"],
    )
    return ReelforgeApp(
        route_handlers=[
            PageController, AccountController, ApiController, BatchController, AdminController,
            BatchPageController,
            events, batch_rows,
            BackupController,
            fal_webhook, health, media, favicon, *metrics_routes(settings),
            create_static_files_router(path="/static", directories=[STATIC_DIR],
                                       include_in_schema=False),
        ],
        lifespan=[lifespan, serve_metrics_port, scheduled_backups],
        stores={STORE_NAME: session_store},
        middleware=[AllowedHosts(settings.host_allowlist), sessions.middleware],
        before_send=[security_headers(settings)],  # every response, 404s and static too
        csrf_config=CSRFConfig(
            secret=settings.session_secret.hex(), cookie_name="csrftoken",
            header_name="x-csrftoken", cookie_secure=settings.secure_cookies,
            cookie_samesite="lax",
            # The fal webhook is signed instead. /events is a read-only @asgi stream: the
            # CSRF middleware parses form bodies before checking the method, and that
            # crashes (500) on @asgi routes, which have no body-size limit to resolve.
            exclude=["/api/webhooks/fal", "^/events/?$"],
        ),
        template_config=TemplateConfig(instance=JinjaTemplateEngine.from_environment(env)),
        # /schema serves the document itself (also at /schema/openapi.json): the stock
        # viewers load their scripts from a CDN, which the CSP (and an offline host) refuses.
        openapi_config=OpenAPIConfig(title="Reelforge", version="0.1.0", path="/schema",
                                     render_plugins=[JsonRenderPlugin(path=["/openapi.json"])]),
        exception_handlers={HTTPException: _http_error, ConnectionLost: _database_unreachable,
                            Exception: _server_error},
        request_max_body_size=1024 * 1024,
        logging_config=None,  # app/observability/logging.py configures logging, once
    )
