"""The admin pages: the whole queue, one job's timeline, and the operator's actions
(cancel, retry, release a stuck lease). Only for accounts with `admin: true`; everyone else,
signed in or not, gets the same 404 as an unknown page, before anything else (even the CSRF
check) runs, so nothing tells them these routes exist. That includes a wrong method: routing
answers it with 405 before any middleware runs, so the app's error handler asks
`hide_admin_routes` to turn it into the not-found."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Redirect, Template
from litestar.types import ASGIApp, Receive, Scope, Send

from app.db import jobs as jobs_db
from app.db import templates as templates_db
from app.db import users as users_db
from app.db.records import User, VideoJob
from app.jobs.service import ACTIVE_VALUES, JobRequestError
from app.jobs.states import Status
from app.observability.logging import get_logger
from app.services import Services
from app.web.admin_view import admin_job_view
from app.web.auth import job_service, services_of
from app.web.job_filters import safe_id

log = get_logger("reelforge.admin")
PAGE_SIZE = 50
STATE_FILTERS: dict[str, list[str]] = {
    "active": ACTIVE_VALUES, **{s.value: [s.value] for s in Status},
}
NOTICES = {
    "canceled": "The job was canceled; its credits were released.",
    "released": "The lease was released; the driver picks the job up now.",
    "retried": "A new job was started with the same inputs, charged to the same account.",
    "already_retried": "That job had already been retried: this is its retry. Nothing new "
                       "was started.",
}


def admin_only(app: ASGIApp) -> ASGIApp:
    """Route middleware: anyone but a signed-in admin gets the not-found response."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        session = scope.get("session")
        user_id = session.get("uid") if isinstance(session, dict) else None
        services: Services = scope["litestar_app"].state.services
        user = await users_db.by_id(services.db, user_id) if isinstance(user_id, str) else None
        if not user or not user.admin:
            raise NotFoundException()
        scope.setdefault("state", {})["admin_user"] = user
        await app(scope, receive, send)

    return middleware


def hide_admin_routes(request: Request[Any, Any, Any], exc: HTTPException) -> HTTPException:
    """A 405 under /admin (e.g. `GET /admin/jobs/x/cancel`) would tell anyone, signed in
    or not, that the route exists: it becomes the unknown route's 404, for admins too (who
    lose nothing by it). Anything else passes through unchanged."""
    path = request.scope.get("path", "")
    if isinstance(exc, MethodNotAllowedException) and (
            path == "/admin" or path.startswith("/admin/")):
        return NotFoundException()
    return exc


def _admin(request: Request[Any, Any, Any]) -> User:
    user: User = request.scope["state"]["admin_user"]
    return user


def _url(path: str, **params: Any) -> str:
    kept = {k: v for k, v in params.items()
            if v not in (None, "") and not (k == "page" and v == 1)}
    return f"{path}?{urlencode(kept)}" if kept else path


class AdminController(Controller):
    path = "/admin"
    middleware = [admin_only]
    include_in_schema = False

    @get("/", name="admin")
    async def queue(
        self, request: Request[Any, Any, Any],
        state_filter: Annotated[str | None, QueryParameter(name="state")] = None,
        template: FromQuery[str | None] = None, owner: FromQuery[str | None] = None,
        page: FromQuery[int] = 1,
    ) -> Template:
        services = services_of(request)
        db = services.db
        state = state_filter if state_filter in STATE_FILTERS else None
        template = (template or "").strip()[:100] or None
        owner = (owner or "").strip().lower()[:254] or None
        page = max(1, min(page, 10_000))
        owner_id: str | None = None
        no_match = False
        if owner:
            person = await users_db.by_email(db, owner)
            owner_id = person.id if person else None
            no_match = person is None
        rows: list[VideoJob] = []
        if not no_match:
            rows = await jobs_db.list_all(
                db, statuses=STATE_FILTERS[state] if state else None, template=template,
                owner_id=owner_id, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
        has_next = len(rows) > PAGE_SIZE
        counts = await jobs_db.count_by_status(db)
        counts["active"] = sum(counts.get(s, 0) for s in ACTIVE_VALUES)
        counts["all"] = sum(counts.get(s.value, 0) for s in Status)
        filters = {"template": template, "owner": owner}
        return Template(template_name="pages/admin_queue.html", context={
            "user": _admin(request), "active_nav": "admin",
            "rows": [admin_job_view(j, j.owner_email) for j in rows[:PAGE_SIZE]],
            "state": state, "template": template, "owner": owner, "page": page,
            "counts": counts, "templates": await templates_db.list_active(db),
            "states": [(None, "All", "all"), ("active", "Active", "active")]
            + [(s.value, s.value.capitalize(), s.value) for s in Status],
            "state_urls": {key: _url("/admin", state=key, **filters)
                           for key in [None, *STATE_FILTERS]},
            "newer_url": _url("/admin", state=state, page=page - 1, **filters)
            if page > 1 else None,
            "older_url": _url("/admin", state=state, page=page + 1, **filters)
            if has_next else None,
            # New jobs are added live only to the unfiltered first page.
            "live_new": page == 1 and not (state or template or owner),
        })

    @get("/jobs/{job_id:str}", name="admin_job")
    async def job(self, request: Request[Any, Any, Any], job_id: FromPath[str],
                  done: FromQuery[str | None] = None) -> Template:
        return await _job_page(request, job_id, notice=NOTICES.get(done or ""))

    @post("/jobs/{job_id:str}/cancel")
    async def cancel(self, request: Request[Any, Any, Any],
                     job_id: FromPath[str]) -> Response[Any] | Template:
        job = await _get_job(request, job_id)
        try:
            await job_service(request).cancel(job.owner_id, job_id,
                                              reason="canceled by an admin")
        except JobRequestError as exc:
            return await _job_page(request, job_id, error=exc.body.get("message"),
                                   status=exc.status)
        log.info("admin.cancel", admin_id=_admin(request).id, job_id=job_id)
        return Redirect(f"/admin/jobs/{job_id}?done=canceled", status_code=303)

    @post("/jobs/{job_id:str}/retry")
    async def retry(self, request: Request[Any, Any, Any],
                    job_id: FromPath[str]) -> Response[Any] | Template:
        services = services_of(request)
        await _get_job(request, job_id)
        try:  # one retry per job, whoever asks: a second one is sent to the first's job
            new, created = await job_service(request).retry(
                job_id, services.settings.provider_name)
        except JobRequestError as exc:
            return await _job_page(request, job_id, error=exc.body.get("message"),
                                   status=exc.status)
        new_id = new.id
        log.info("admin.retry", admin_id=_admin(request).id, job_id=job_id,
                 new_job_id=new_id, created=created)
        done = "retried" if created else "already_retried"
        return Redirect(f"/admin/jobs/{new_id}?done={done}", status_code=303)

    @post("/jobs/{job_id:str}/release")
    async def release(self, request: Request[Any, Any, Any],
                      job_id: FromPath[str]) -> Response[Any] | Template:
        services = services_of(request)
        await _get_job(request, job_id)
        released = await jobs_db.release_lease(services.db, job_id, ACTIVE_VALUES,
                                               reason="lease released by an admin")
        if released is None:
            return await _job_page(request, job_id, status=409,
                                   error="The job holds no lease (or has finished).")
        if services.driver:
            services.driver.wake()
        log.info("admin.release_lease", admin_id=_admin(request).id, job_id=job_id)
        return Redirect(f"/admin/jobs/{job_id}?done=released", status_code=303)


async def _get_job(request: Request[Any, Any, Any], job_id: str) -> VideoJob:
    job = await jobs_db.get(services_of(request).db, safe_id(job_id))
    if job is None:
        raise NotFoundException()
    return job


async def _job_page(
    request: Request[Any, Any, Any], job_id: str, *, notice: str | None = None,
    error: str | None = None, status: int = 200,
) -> Template:
    db = services_of(request).db
    job = await _get_job(request, job_id)
    owner = await users_db.by_id(db, job.owner_id)
    return Template(template_name="pages/admin_job.html", status_code=status, context={
        "user": _admin(request), "active_nav": "admin",
        "j": admin_job_view(job, owner.email if owner else None),
        "timeline": await jobs_db.timeline(db, safe_id(job_id)),
        "notice": notice, "error": error,
    })
