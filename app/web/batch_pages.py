"""The generate form's "Many variants" submission: `POST /fragments/batch` reads the table
(app/web/batch_form.py), records the batch through `BatchService.create` (all or nothing)
and answers the form re-rendered. The batch's card and its toast come over the event
stream, as for any job; this answer carries only the form and the credit badge."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post

from app.db import users as users_db
from app.db.records import User
from app.jobs.service import JobRequestError
from app.web.auth import batch_service, current_user, services_of
from app.web.batch_form import (
    batch_body,
    batch_view,
    blank_rows,
    padded,
    place_error,
    read_rows,
)
from app.web.generate import generate_context
from app.web.responses import is_htmx, refused_form

# Fields the form shows next to their own control, outside the table.
FORM_FIELDS = ("templateSlug", "startKey", "name")


def _plural(n: int) -> str:
    return f"{n} video{'' if n == 1 else 's'}"


def _refusal_message(exc: JobRequestError, count: int) -> str:
    if exc.status == 402:
        return (f"Not enough credits: {_plural(count)} cost {exc.body.get('required')} "
                f"credits, and you have {exc.body.get('available')} available.")
    return str(exc.body.get("message") or "The batch could not be started.")


class BatchPageController(Controller):
    include_in_schema = False  # a page's form; /schema documents POST /api/batches

    @post("/fragments/batch", status_code=202)
    async def submit_batch(self, request: Request[Any, Any, Any]) -> Response[Any]:
        user = await current_user(request)
        if user is None:
            return Response("", status_code=401)
        services = services_of(request)
        max_rows = services.settings.batch_max_rows
        form = await request.form()
        body, table_rows = batch_body(form)
        try:
            if not table_rows:
                raise JobRequestError(400, {"error": "invalid", "field": "rows",
                                            "message": "Fill in at least one row."})
            batch, job_ids, _ = await batch_service(request).create(
                user.id, body, services.settings.provider_name)
        except JobRequestError as exc:
            return await self._refused(request, user, form, body, table_rows, exc, max_rows)
        fresh = await users_db.by_id(services.db, user.id) or user
        ctx = await generate_context(request, fresh, template_slug=body["templateSlug"],
                                     image_key=body["startKey"])
        notice = f"Batch “{batch.name}” started: {_plural(len(job_ids))}."
        html = self._render(request, ctx, batch_view(blank_rows(), max_rows, notice=notice))
        html += services.fragments.credits(fresh).replace(
            'id="credits"', 'id="credits" hx-swap-oob="true"', 1)
        return Response(html, status_code=202, media_type="text/html")

    async def _refused(self, request: Request[Any, Any, Any], user: User, form: Any,
                       body: dict[str, Any], table_rows: list[int], exc: JobRequestError,
                       max_rows: int) -> Response[Any]:
        """The form as typed, the refusal on its row and cell and under the table."""
        field, message = place_error(exc.body, table_rows)
        errors = {field: message} if field in FORM_FIELDS else {}
        cells = {field: message} if field and field.startswith("rows[") else {}
        error = None if errors else (message if cells else _refusal_message(exc, len(table_rows)))
        ctx = await generate_context(request, user, template_slug=body["templateSlug"],
                                     image_key=body["startKey"], errors=errors)
        rows = padded(read_rows(form.multi_items()))
        name = form.get("name") if isinstance(form.get("name"), str) else ""
        html = self._render(request, ctx, batch_view(rows, max_rows, name=name, errors=cells,
                                                     error=error))
        response = Response(html, status_code=exc.status, media_type="text/html")
        return refused_form(response, exc.status) if is_htmx(request) else response

    def _render(self, request: Request[Any, Any, Any], ctx: dict[str, Any],
                batch: dict[str, Any]) -> str:
        return services_of(request).fragments.render(
            "generate", **ctx, mode="batch", batch=batch, oob=False)

