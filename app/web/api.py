"""The JSON API (also used by the pages' htmx forms where it fits)."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body, Parameter

from app.db import jobs as jobs_db
from app.db import library as library_db
from app.db import templates as templates_db
from app.db import users as users_db
from app.db.connection import Thrown
from app.db.records import VideoJob
from app.jobs.service import (
    IDEMPOTENCY_HEADER,
    IdempotentReplay,
    JobRequestError,
    accepted_body,
)
from app.jobs.states import FINAL, Status, public_status
from app.storage.posters import poster_key
from app.web.auth import require_user, services_of, user_id_of
from app.web.responses import error, is_htmx, over_quota
from app.web.schemas import (
    BAD_REQUEST,
    IDEMPOTENCY_KEY_SCHEMA,
    JOB_FILTER_SCHEMA,
    JOB_ID_SCHEMA,
    NOT_FOUND,
    NOT_SIGNED_IN,
    SUBMIT_BODY,
    TOO_LARGE,
    UPLOAD_BODY,
    AlreadyFinished,
    AlreadyRendered,
    Deleted,
    InsufficientCredits,
    JobList,
    JobStatus,
    LibraryItem,
    Me,
    SubmitAccepted,
    TemplateOut,
    TooManyActiveJobs,
    Uploaded,
    err,
    ok,
    operation_with_body,
)
from app.web.uploads import MAX_UPLOAD_BYTES, UploadRejected, check_image

REFUSED_HEADER = "X-Refused-Status"  # see refused_form()
IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,255}")  # what IDEMPOTENCY_KEY_SCHEMA documents
# jobId on status and cancel: checked by the handlers, so that a missing one is answered in
# the API's own error shape (naming the field), not the framework's.
JobIdParam = Annotated[str | None, Parameter(query="jobId", required=True,
                                             schema_extra=JOB_ID_SCHEMA)]
STATUS_FILTERS = {
    "active": sorted(s.value for s in Status if s not in FINAL),
    "completed": ["completed"], "failed": ["failed"], "canceled": ["canceled"],
}


def template_json(t: dict[str, Any]) -> dict[str, Any]:
    return {
        "slug": t["slug"], "name": t["name"], "description": t["description"],
        "credits": t["credits"],
        "variables": [variable_json(v) for v in t.get("variables", [])],
    }


def variable_json(v: dict[str, Any]) -> dict[str, Any]:
    out = {"name": v["name"], "label": v.get("label", v["name"]),
           "required": bool(v.get("required")), "maxLength": v.get("maxLength")}
    if v.get("default"):  # only a real one ("" is no default; DESIGN: "default"?)
        out["default"] = v["default"]
    return out


async def library_json(request: Request, item: dict[str, Any]) -> dict[str, Any]:
    return {"key": item["key"], "kind": item["kind"],
            "url": await services_of(request).storage.url(item["key"]),
            "createdAt": item["created_at"].isoformat()}


async def job_status_json(request: Request, job: VideoJob) -> dict[str, Any]:
    status = public_status(job.status.value)
    if status == Status.COMPLETED and job.result_key is not None:
        return {"status": status, "url": await services_of(request).storage.url(job.result_key),
                "key": job.result_key, "credits": job.credits}
    if status in (Status.FAILED, Status.CANCELED):
        return {"status": status, "error": job.error or status}
    body: dict[str, Any] = {"status": status, "message": status_message(job)}
    if job.queue_position is not None:
        body["queuePosition"] = job.queue_position
    # What the card shows, when it is known: from the provider's progress or past jobs'
    # run times (the template's rough figure is no measurement, so it is left out).
    fragments = services_of(request).fragments
    await fragments.durations.prime(services_of(request).db, [job])
    view = fragments.job_view(job)
    if view["progress_source"] != "template" and job.status != Status.FINALIZING:
        body["progress"] = round(view["progress"] / 100, 2)
    elif job.status == Status.FINALIZING:
        body["progress"] = 1.0  # rendered; only saving is left
    if view["eta"] is not None and job.status != Status.FINALIZING:
        body["etaSeconds"] = round(view["eta"])
    return body


def status_message(job: VideoJob) -> str:
    s = job.status
    if s == Status.PENDING:
        return "Starting…"
    if s == Status.QUEUED:
        pos = job.queue_position
        return f"In queue (position {pos + 1})" if pos is not None else "In queue"
    if s == Status.FINALIZING:
        return "Saving your video…"
    return job.last_log or "Generating video…"


def job_json(job: VideoJob) -> dict[str, Any]:
    charged = job.status == Status.COMPLETED
    return {
        "jobId": job.id, "status": public_status(job.status.value),
        "template": job.template, "startKey": job.start_key,
        "variables": job.variables,
        # Credits are charged only when a video is delivered: a failed or canceled job (or
        # one still running) has been charged nothing. `price` is what it costs on success.
        "credits": job.credits if charged else 0, "charged": charged,
        "price": job.credits,
        "createdAt": job.created_at.isoformat(),
        "finishedAt": job.finished_at.isoformat() if job.finished_at else None,
        "key": job.result_key, "error": job.error,
    }


class ApiController(Controller):
    path = "/api"

    @get("/me", responses={200: ok(Me, "The signed-in person"),
                           401: NOT_SIGNED_IN})
    async def me(self, request: Request) -> dict[str, Any]:
        user = await require_user(request)
        return {"email": user["email"], "credits": user["balance"],
                "available": users_db.available(user)}

    @get("/templates", responses={200: ok(list[TemplateOut], "The template catalogue")})
    async def templates(self, request: Request) -> list[dict[str, Any]]:
        return [template_json(t) for t in await templates_db.list_active(services_of(request).db)]

    @get("/library", responses={200: ok(list[LibraryItem], "The caller's library, newest first"),
                                401: NOT_SIGNED_IN})
    async def library(self, request: Request) -> list[dict[str, Any]]:
        user = await require_user(request)
        items = await library_db.list_for(services_of(request).db, user_id_of(user))
        return [await library_json(request, i) for i in items]

    @post("/library", request_max_body_size=MAX_UPLOAD_BYTES + 1024 * 1024,
          operation_class=operation_with_body("multipart/form-data", UPLOAD_BODY),
          responses={201: ok(Uploaded, "Stored in the library"),
                     400: BAD_REQUEST, 401: NOT_SIGNED_IN,
                     413: err("Over the size limit, or past the person's storage quota "
                              "(`storage_quota_exceeded` with `used`, `quota`, `size`)")})
    async def upload(
        self, request: Request,
        data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> Response:
        user = await require_user(request)
        services = services_of(request)
        # The form as a dict: an UploadFile parameter would take the first file of any field.
        upload = data.get("file")
        if not isinstance(upload, UploadFile):
            return _upload_refused(request, error(
                400, "invalid_image", "Send one image in the multipart field `file`",
                field="file"))
        content = await upload.read()
        uid = user_id_of(user)
        quota = services.settings.storage_quota
        used = await library_db.used_bytes(services.db, uid)  # before decoding: cheap first
        if used + len(content) > quota:
            return _upload_refused(request, over_quota(used, len(content), quota))
        try:
            ext, content_type = await check_image(content)  # decoded off the event loop
        except UploadRejected as exc:
            return _upload_refused(request, error(400, "invalid_image", str(exc), field="file"))
        key = f"users/{uid}/library/{uuid.uuid4().hex}.{ext}"
        await services.storage.put_bytes(key, content, content_type)
        try:  # checked again where it counts: with the insert, in one transaction
            item = await library_db.add(services.db, uid, key, "image", content_type,
                                        len(content), name=(upload.filename or "")[:200] or None,
                                        quota=quota)
        except Thrown as exc:
            if exc.code != "over_quota":
                raise
            await services.storage.delete(key)
            return _upload_refused(request, over_quota(
                await library_db.used_bytes(services.db, uid), len(content), quota))
        body = await library_json(request, item)
        if is_htmx(request):
            html = services.fragments.library_tile(item, body["url"])
            return Response(html, status_code=201, media_type="text/html")
        return Response({k: body[k] for k in ("key", "kind", "url")}, status_code=201)

    @delete("/library", status_code=200,
            responses={200: ok(Deleted, "Deleted"), 400: BAD_REQUEST,
                       401: NOT_SIGNED_IN, 404: NOT_FOUND})
    async def delete_item(self, request: Request, key: str) -> Response:
        user = await require_user(request)
        services = services_of(request)
        uid = user_id_of(user)
        item = await library_db.get_owned(services.db, uid, key)
        if item is None:
            return error(404, "not_found", "No such item in your library", field="key")
        await library_db.delete_owned(services.db, uid, key)
        await services.storage.delete(key)
        if item["kind"] == "video":  # its poster goes with it (older videos have none)
            await services.storage.delete(item.get("poster_key") or poster_key(key))
        if services.notifier:  # the person's other tabs drop the tile too
            services.notifier.publish_library_removed(uid, key)
        if is_htmx(request):
            return Response("", status_code=200, media_type="text/html")
        return Response({"deleted": key})

    @post("/templates/video", status_code=202,
          operation_class=operation_with_body("application/json", SUBMIT_BODY),
          responses={202: ok(SubmitAccepted, "Recorded; credits reserved"),
                     400: BAD_REQUEST, 401: NOT_SIGNED_IN,
                     402: err("Not enough credits available", InsufficientCredits),
                     404: err("Unknown template, or the start image is not the caller's"),
                     413: TOO_LARGE,
                     422: err(f"The {IDEMPOTENCY_HEADER} was already used with another body"),
                     429: err("Too many active jobs", TooManyActiveJobs)})
    async def submit(
        self, request: Request,
        idempotency_key: Annotated[str | None, Parameter(
            header=IDEMPOTENCY_HEADER, required=False, schema_extra=IDEMPOTENCY_KEY_SCHEMA,
            description="Any unique value (e.g. a UUID) per submission: the same key from "
                        "the same person within 24 h returns the first answer and creates "
                        "nothing; with a different body it is refused with 422.",
        )] = None,
    ) -> Response:
        user = await require_user(request)
        services = services_of(request)
        if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            return error(400, "invalid", f"{IDEMPOTENCY_HEADER} must be 1 to 255 visible "
                         "ASCII characters", field=IDEMPOTENCY_HEADER)
        payload = await _submission(request)
        if isinstance(payload, Response):
            return payload
        try:
            job = await services.jobs.create(
                user_id_of(user), payload.get("templateSlug"), payload.get("startKey"),
                payload.get("variables"), services.settings.provider_name,
                idempotency_key=idempotency_key,
            )
        except IdempotentReplay as replay:
            # The first answer again. The page gets the job's current card and toast.
            first = await jobs_db.get(services.db, replay.job_id)
            if is_htmx(request) and first is not None:
                from app.web.pages import generate_success_response

                return await generate_success_response(request, user, payload, first)
            return Response(replay.body, status_code=replay.status)
        except JobRequestError as exc:
            if is_htmx(request) and exc.body.get("field") != IDEMPOTENCY_HEADER:
                from app.web.pages import generate_error_response

                return refused_form(await generate_error_response(request, user, payload, exc),
                                    exc.status)
            return Response(exc.body, status_code=exc.status)
        if is_htmx(request):
            from app.web.pages import generate_success_response

            return await generate_success_response(request, user, payload, job)
        return Response(accepted_body(job.id, job.credits), status_code=202)

    @get("/templates/video/status",
         responses={200: ok(JobStatus, "The job's public status; while active, `progress` "
                               "(0–1) and `etaSeconds` when known (the provider's progress, "
                               "or recent run times of the template)"),
                    400: BAD_REQUEST, 401: NOT_SIGNED_IN, 404: NOT_FOUND})
    async def status(self, request: Request, job_id: JobIdParam = None) -> Response:
        user = await require_user(request)
        if job_id is None:
            return _missing_job_id()
        job = await jobs_db.get_owned(services_of(request).db, _safe_id(job_id), user_id_of(user))
        if job is None:
            return error(404, "not_found", "No such job", field="jobId")
        return Response(await job_status_json(request, job))

    @post("/templates/video/cancel", status_code=200,
          responses={200: ok(JobStatus, "The job, now canceled"),
                     400: BAD_REQUEST, 401: NOT_SIGNED_IN, 404: NOT_FOUND,
                     409: err("The job had already finished, or its video had already been "
                              "rendered (it completes and is charged)",
                              AlreadyFinished | AlreadyRendered)})
    async def cancel(self, request: Request, job_id: JobIdParam = None) -> Response:
        user = await require_user(request)
        if job_id is None:
            return _missing_job_id()
        services = services_of(request)
        try:
            job = await services.jobs.cancel(user_id_of(user), _safe_id(job_id))
        except JobRequestError as exc:
            return Response(exc.body, status_code=exc.status)
        if is_htmx(request):
            return Response(services.fragments.job_card(job), media_type="text/html")
        return Response(await job_status_json(request, job))

    @get("/jobs", responses={200: ok(JobList, "The caller's jobs"),
                             400: BAD_REQUEST, 401: NOT_SIGNED_IN})
    async def jobs(
        self, request: Request,
        status: Annotated[str | None, Parameter(schema_extra=JOB_FILTER_SCHEMA)] = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        offset: Annotated[int, Parameter(ge=0, le=100_000)] = 0,
    ) -> Response:
        user = await require_user(request)
        if status is not None and status not in STATUS_FILTERS:
            return error(400, "invalid", f"status must be one of {', '.join(STATUS_FILTERS)}",
                         field="status")
        rows = await jobs_db.list_for(
            services_of(request).db, user_id_of(user),
            STATUS_FILTERS[status] if status else None, limit=limit + 1, offset=offset,
        )
        return Response({"jobs": [job_json(j) for j in rows[:limit]],
                         "nextOffset": offset + limit if len(rows) > limit else None})


def refused_form(response: Response, status: int) -> Response:
    """A refused request from a page's form (htmx): the answer is what the page shows (the
    generate form as typed with the server's message, or an upload's error), so it is a
    200 with the status a JSON client gets in REFUSED_HEADER. A 4xx would make the browser
    log "Failed to load resource" for every typo; JSON clients still get 400/402/404/413/
    429 exactly as documented. A JSON answer swaps nothing (static/app.js shows it)."""
    response.status_code = 200
    response.headers[REFUSED_HEADER] = str(status)
    response.headers["Cache-Control"] = "no-store"
    if not str(response.media_type or "").startswith("text/html"):
        response.headers["HX-Reswap"] = "none"
    return response


def _upload_refused(request: Request, response: Response) -> Response:
    return refused_form(response, response.status_code) if is_htmx(request) else response


def _missing_job_id() -> Response:
    return error(400, "invalid", "jobId is required: the jobId that POST /api/templates/video "
                 "answered", field="jobId")


def _safe_id(job_id: str) -> str:
    """Job ids are uuid hex; anything else simply matches no job."""
    return job_id if job_id.isalnum() and len(job_id) <= 64 else "invalid"


async def _submission(request: Request) -> dict[str, Any] | Response:
    """The submission from JSON, or from the generate form (fields `variables.NAME`)."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json") or not ctype:
        await request.body()  # over the size limit: 413 too_large, not a JSON error
        try:
            body = await request.json()
        except Exception:
            return error(400, "invalid_json", "The body must be a JSON object", field="body")
        if not isinstance(body, dict):
            return error(400, "invalid_json", "The body must be a JSON object", field="body")
        return body
    form = await request.form()
    variables = {k.removeprefix("variables."): v for k, v in form.items()
                 if k.startswith("variables.")}
    return {"templateSlug": form.get("templateSlug"), "startKey": form.get("startKey"),
            "variables": variables}
