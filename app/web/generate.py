"""The generate component (the workspace panel and the templates tab): what its form
shows, and the answers to a submission from it (app/web/api.py submits; the pages and the
batch pages render it)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response

from app.db import library as library_db
from app.db import templates as templates_db
from app.db import users as users_db
from app.db.records import LibraryItem, User, VideoJob
from app.jobs.service import JobRequestError
from app.web.auth import notifier_of, services_of


class ShownItem(LibraryItem, kw_only=True):
    """A library item with the URLs its tile shows."""
    url: str
    poster_url: str | None = None


async def library_images(request: Request[Any, Any, Any], user_id: str) -> list[ShownItem]:
    storage = services_of(request).storage
    items = await library_db.list_for(services_of(request).db, user_id)
    return [ShownItem(**msgspec.structs.asdict(i), url=await storage.url(i.key),
                      poster_url=await storage.url(i.poster_key) if i.poster_key else None)
            for i in items]


async def generate_context(
    request: Request[Any, Any, Any], user: User, *, template_slug: str | None = None,
    image_key: str | None = None, values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None, images: list[ShownItem] | None = None,
) -> dict[str, Any]:
    """Everything the generate component needs, for both places it appears."""
    db = services_of(request).db
    templates = await templates_db.list_active(db)
    if images is None:
        images = await library_images(request, user.id)
    image_list = [i for i in images if i.kind == "image"]
    chosen = next((t for t in templates if t.slug == template_slug), None)
    chosen = chosen or (templates[0] if templates else None)
    image = next((i for i in image_list if i.key == image_key), None)
    image = image or (image_list[0] if image_list else None)
    return {"templates": templates, "template": chosen, "images": image_list, "image": image,
            "form_values": values or {}, "errors": errors or {}, "user": user,
            "available": user.available}


def typed_values(payload: dict[str, Any]) -> dict[str, str]:
    """The variables as typed, to re-render the form. A JSON body's `variables` may be any
    JSON value (a list, a string…): only an object has values to show."""
    given = payload.get("variables")
    return {str(k): str(v) for k, v in given.items()} if isinstance(given, dict) else {}


async def generate_error_response(
    request: Request[Any, Any, Any], user: User, payload: dict[str, Any],
    exc: JobRequestError,
) -> Response[Any]:
    """Re-render the form with what was typed and the server's message; add a toast."""
    fragments = services_of(request).fragments
    field = exc.body.get("field")
    values = typed_values(payload)
    errors = {field: exc.body.get("message", "")} if field else {}
    ctx = await generate_context(request, user, template_slug=payload.get("templateSlug"),
                                 image_key=payload.get("startKey"), values=values,
                                 errors=errors)
    html = fragments.render("generate", **ctx, oob=False)
    if exc.status == 402:
        html += _oob_toast(fragments.message_toast(
            "error", f"Not enough credits: this template costs {exc.body['required']}, "
            f"you have {exc.body['available']} available.", "/account", "See your credits"))
    elif exc.status == 429 or not field:
        html += _oob_toast(fragments.message_toast("warning", exc.body.get("message", "")))
    return Response(html, status_code=exc.status, media_type="text/html")


async def generate_success_response(
    request: Request[Any, Any, Any], user: User, payload: dict[str, Any], job: VideoJob,
) -> Response[Any]:
    """The form stays as it was; the card and the notice about work in progress (now
    counting this job) arrive with the answer (the stream sends them too; the page keeps
    one of each, by id, the newest)."""
    services = services_of(request)
    fresh = await users_db.by_id(services.db, user.id)
    values = typed_values(payload)
    ctx = await generate_context(request, fresh or user,
                                 template_slug=payload.get("templateSlug"),
                                 image_key=payload.get("startKey"), values=values)
    f = services.fragments
    await f.durations.prime(services.db, [job])
    html = f.render("generate", **ctx, oob=False)
    html += _upsert("#job-list", "afterbegin", f.job_card(job))
    html += _oob_toast((await notifier_of(request).progress_event(user.id)).data)
    if fresh:
        html += f.credits(fresh).replace('id="credits"', 'id="credits" hx-swap-oob="true"', 1)
    return Response(html, status_code=202, media_type="text/html")


def _oob_toast(html: str) -> str:
    """A notice for the page's toast stack (static/app.js places it: newest on top)."""
    return _upsert("#toasts", "afterbegin", html)


def _upsert(target: str, position: str, html: str) -> str:
    """Added by static/app.js where it belongs, or in place of the element with its id."""
    return f'<template data-upsert="{target}" data-position="{position}">{html}</template>'
