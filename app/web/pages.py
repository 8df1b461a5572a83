"""Server-rendered pages and the fragments their htmx controls fetch."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template

from app.db import batches as batches_db
from app.db import jobs as jobs_db
from app.db import library as library_db
from app.db import throttle as throttle_db
from app.db import users as users_db
from app.db.connection import Thrown
from app.db.records import User, VideoJob
from app.emails import InvalidEmail, legacy_form, normalise_email
from app.web import sessions
from app.web.auth import (
    MAX_PASSWORD,
    MIN_PASSWORD,
    current_user,
    hash_password,
    login_throttle,
    services_of,
    verify_password,
)
from app.web.batch_form import form_state
from app.web.batch_views import batch_views
from app.web.client_address import client_address, counting_network
from app.web.generate import generate_context, library_images
from app.web.job_filters import STATUS_FILTERS, safe_id
from app.web.responses import is_htmx

LOGIN_FAILED = "That email and password don't match an account."
SIGNUP_REFUSED = ("Too many accounts have been created from your network in the last hour. "
                  "Please try again later, or sign in if you already have an account.")


JOBS_PAGE = 20  # cards per page of /jobs; "Load more" brings the next ones
RECENT = 8  # cards in "Recent videos" (workspace, templates tab)


def _instant(value: str | None) -> datetime | None:
    """A cursor from a Load more link (an ISO time), or None for a missing or bad one."""
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _client(request: Request[Any, Any, Any]) -> str:
    return client_address(request.scope, services_of(request).settings.trusted_proxy_networks)


def safe_next(target: str | None) -> str:
    """Only same-site paths: never an open redirect after sign-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/"


async def job_urls(request: Request[Any, Any, Any], rows: list[VideoJob]) -> dict[str, str]:
    storage = services_of(request).storage
    return {j.id: await storage.url(j.result_key) for j in rows if j.result_key}


async def _page(request: Request[Any, Any, Any], name: str, user: User | None,
                **ctx: Any) -> Template:
    return Template(template_name=f"pages/{name}.html",
                    context={"user": user, "active_nav": name, **ctx})


async def card_items(request: Request[Any, Any, Any], uid: str, *, limit: int,
                     statuses: list[str] | None = None,
                     before: datetime | None = None, jobs: bool = True,
                     batches: bool = True) -> tuple[list[dict[str, Any]], dict[str, str], bool]:
    """A list of cards, newest first: jobs, and batches as one card each (their rows are
    then left out), `limit` at most. Returns (items: {"job": …} or {"batch": view}, the
    finished jobs' video URLs, whether there are more)."""
    db = services_of(request).db
    rows = await jobs_db.list_for(db, uid, statuses, limit=limit + 1, before=before,
                                  singles=batches) if jobs else []
    found = await batches_db.list_for(db, uid, limit + 1, before=before) if batches else []
    items: list[dict[str, Any]] = [{"job": j, "at": j.created_at} for j in rows]
    items += [{"batch": v, "at": v["created_at"]} for v in await batch_views(request, found)]
    items.sort(key=lambda i: i["at"], reverse=True)
    more, items = len(items) > limit, items[:limit]
    shown: list[VideoJob] = [i["job"] for i in items if "job" in i]
    await services_of(request).fragments.durations.prime(db, shown)
    return items, await job_urls(request, shown), more


class PageController(Controller):
    include_in_schema = False  # HTML pages and forms; /schema documents the JSON API

    @get("/", name="workspace")
    async def workspace(self, request: Request[Any, Any, Any],
                        image: FromQuery[str | None] = None) -> Template | Redirect:
        user = await current_user(request)
        if user is None:
            return Redirect("/login")
        uid = user.id
        items = await library_images(request, uid)
        ctx = await generate_context(request, user, image_key=image, images=items)
        recent, urls, _ = await card_items(request, uid, limit=RECENT)
        return await _page(request, "workspace", user, items=items, cards=recent, gen=ctx,
                           urls=urls)

    @get("/templates", name="templates")
    async def templates(self, request: Request[Any, Any, Any],
                        template: FromQuery[str | None] = None,
                        image: FromQuery[str | None] = None) -> Template | Redirect:
        user = await current_user(request)
        if user is None:
            return Redirect("/login?next=/templates")
        ctx = await generate_context(request, user, template_slug=template, image_key=image)
        recent, urls, _ = await card_items(request, user.id, limit=RECENT)
        return await _page(request, "templates", user, gen=ctx, cards=recent, urls=urls,
                           selected=template)

    @get("/jobs", name="jobs")
    async def jobs(self, request: Request[Any, Any, Any], status: FromQuery[str | None] = None,
                   before: FromQuery[str | None] = None,
                   job: FromQuery[str | None] = None) -> Template | Redirect:
        """The person's jobs, newest first, JOBS_PAGE at a time. `before` (a created_at
        from the Load more link) continues the list; htmx gets only the next cards. `job`
        starts the list at that job (the Account history links to it)."""
        user = await current_user(request)
        if user is None:
            return Redirect("/login?next=/jobs")
        db = services_of(request).db
        uid = user.id
        selected = status if status in STATUS_FILTERS or status == "batches" else None
        cursor = _instant(before)
        start = await jobs_db.get_owned(db, safe_id(job), uid) if job and not cursor else None
        if start is not None:  # that job and the ones before it (each job on its own)
            cursor = start.created_at + timedelta(microseconds=1)
        # All: jobs, a batch as one card; Batches: only those; a state: each job, rows too.
        cards, urls, more = await card_items(
            request, uid, limit=JOBS_PAGE, before=cursor,
            statuses=STATUS_FILTERS.get(selected or ""), jobs=selected != "batches",
            batches=selected in (None, "batches") and start is None)
        ctx = {"cards": cards, "urls": urls, "filter": selected,
               "next_before": cards[-1]["at"].isoformat() if more else None,
               "start": start, "list_id": "job-list" if selected in (None, "active", "batches")
               and start is None else "job-list-static"}
        if before and is_htmx(request):
            return Template(template_name="partials/jobs_more.html",
                            context={**ctx, "more_cards": True})
        return await _page(request, "jobs", user, **ctx)

    @get("/jobs/{job_id:str}/thumbnail")
    async def job_thumbnail(self, request: Request[Any, Any, Any],
                            job_id: FromPath[str]) -> Response[Any] | Redirect:
        """A job's picture for its card: the video's poster once there is one, else the
        start image while it is in the library, else a neutral placeholder. A redirect,
        so every place a card is rendered (pages, the stream, API answers) needs only the
        job's id; cached briefly, so a card replaced by a live update does not flicker."""
        user = await current_user(request)
        if user is None:
            return Response("", status_code=401)
        services = services_of(request)
        uid = user.id
        found = await jobs_db.get_owned(services.db, safe_id(job_id), uid)
        if found is None:
            return Response("", status_code=404)
        target = "/static/job-placeholder.svg"
        for key, filed in ((found.poster_key, found.result_key),
                           (found.start_key, found.start_key)):
            if key and filed and await library_db.get_owned(services.db, uid, filed):
                target = await services.storage.url(key)
                break
        return Redirect(target, status_code=302,
                        headers={"cache-control": "private, max-age=300"})

    @get("/fragments/generate")
    async def generate_fragment(
        self, request: Request[Any, Any, Any],
        template_slug: Annotated[str | None, QueryParameter(name="templateSlug")] = None,
        start_key: Annotated[str | None, QueryParameter(name="startKey")] = None,
    ) -> Template | Response[Any]:
        user = await current_user(request)
        if user is None:
            return Response("", status_code=401)
        ctx = await generate_context(request, user, template_slug=template_slug,
                                     image_key=start_key)
        # The mode ("Many variants") and its table are kept across re-renders.
        ctx.update(form_state(request.query_params, ctx["template"],
                              services_of(request).settings.batch_max_rows))
        return Template(template_name="partials/generate.html", context={**ctx, "oob": False})

    @get("/fragments/panel")
    async def panel_fragment(
        self, request: Request[Any, Any, Any], image: FromQuery[str | None] = None,
        template_slug: Annotated[str | None, QueryParameter(name="templateSlug")] = None,
    ) -> Template | Response[Any]:
        """The workspace panel for `image`; the form keeps the template and anything typed
        that came along (`variables.NAME`)."""
        user = await current_user(request)
        if user is None:
            return Response("", status_code=401)
        values = {k.removeprefix("variables."): v for k, v in request.query_params.items()
                  if k.startswith("variables.")}
        ctx = await generate_context(request, user, image_key=image,
                                     template_slug=template_slug, values=values)
        ctx.update(form_state(request.query_params, ctx["template"],
                              services_of(request).settings.batch_max_rows))
        return Template(template_name="partials/workspace_panel.html", context={"gen": ctx})

    # -- sign-in -------------------------------------------------------------------
    @get("/login", name="login")
    async def login_page(self, request: Request[Any, Any, Any],
                         next: FromQuery[str | None] = None) -> Template:
        return await _page(request, "login", None, next=safe_next(next), error=None, email="")

    @get("/signup", name="signup")
    async def signup_page(self, request: Request[Any, Any, Any]) -> Template:
        return await _page(request, "signup", None, errors={}, email="",
                           credits=services_of(request).settings.signup_credits)

    @post("/login")
    async def login(
        self, request: Request[Any, Any, Any],
        data: URLEncodedBody[dict[str, str]],
    ) -> Template | Redirect:
        services = services_of(request)
        typed = data.get("email") or ""
        try:  # every spelling of one address shares its account and its counter
            email = normalise_email(typed)
        except InvalidEmail:
            email = legacy_form(typed)
        password = (data.get("password") or "")[:MAX_PASSWORD]
        target = safe_next(data.get("next"))
        throttle = login_throttle(request)
        keys = (f"email:{email}", f"ip:{_client(request)}")
        wait = await throttle.attempt(*keys)  # counted before the password is checked
        if wait is None:
            return Template(template_name="pages/login.html", status_code=429, context={
                "user": None, "next": target, "email": email,
                "error": "Too many attempts. Wait a few minutes and try again."})
        if wait:
            await asyncio.sleep(wait)
        user = await users_db.by_typed_email(services.db, typed)
        # checked for an unknown email too (against a dummy hash): both cost the same
        matches = await verify_password(user.password_hash if user else None, password)
        if not matches or user is None:
            return Template(template_name="pages/login.html", status_code=400, context={
                "user": None, "next": target, "email": email, "error": LOGIN_FAILED})
        await throttle.succeeded(*keys)
        sessions.begin(request, user.id)
        return Redirect(target, status_code=303)

    @post("/signup")
    async def signup(
        self, request: Request[Any, Any, Any],
        data: URLEncodedBody[dict[str, str]],
    ) -> Template | Redirect:
        services = services_of(request)
        settings = services.settings
        typed = data.get("email") or ""
        email = legacy_form(typed)  # shown back as typed when it is refused
        password = data.get("password") or ""
        errors: dict[str, str] = {}
        try:
            email = normalise_email(typed)
        except InvalidEmail as exc:
            errors["email"] = str(exc)
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            errors["password"] = f"Use {MIN_PASSWORD} to {MAX_PASSWORD} characters."
        # Counted in the database before the account is made (so a concurrent burst from
        # several processes gets no more through); a form with errors costs nothing.
        if not errors and await throttle_db.reserve(
                services.db, [f"signup:{counting_network(_client(request))}"],
                settings.signups_per_hour, 3600) is None:
            return Template(template_name="pages/signup.html", status_code=429, context={
                "user": None, "errors": {}, "email": email, "error": SIGNUP_REFUSED,
                "credits": settings.signup_credits})
        user = None
        if not errors:
            try:
                # argon2 takes ~50 ms of CPU: off the event loop, or every open stream and
                # request of the process stalls while an account is created
                password_hash = await asyncio.to_thread(hash_password, password)
                user = await users_db.create(services.db, email, password_hash,
                                             settings.signup_credits)
            except Thrown:
                errors["email"] = "An account with this email already exists. Sign in instead."
            except Exception:
                errors["email"] = "Enter a valid email address."
        if errors or user is None:
            return Template(template_name="pages/signup.html", status_code=400,
                            context={"user": None, "errors": errors, "email": email,
                                     "credits": settings.signup_credits})
        sessions.begin(request, user.id)
        return Redirect("/", status_code=303)

    @post("/logout")
    async def logout(self, request: Request[Any, Any, Any]) -> Redirect:
        sessions.end(request)
        return Redirect("/login", status_code=303)
