"""The JSON API (also used by the pages' htmx forms where it fits)."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, cast

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromQuery, HeaderParameter, MultipartBody, QueryParameter

from app.db import jobs as jobs_db
from app.db import library as library_db
from app.db import records
from app.db import templates as templates_db
from app.db.connection import Thrown
from app.db.records import VideoJob
from app.jobs.service import (
    IDEMPOTENCY_HEADER,
    IdempotentReplay,
    JobRequestError,
    accepted_body,
)
from app.jobs.states import Status, public_status
from app.storage.posters import poster_key
from app.web.answers import (
    BAD_REQUEST,
    NOT_FOUND,
    NOT_SIGNED_IN,
    TOO_LARGE,
    ActiveStatus,
    AlreadyFinished,
    AlreadyRendered,
    Deleted,
    EndedStatus,
    InsufficientCredits,
    JobActive,
    JobCompleted,
    JobEnded,
    JobList,
    JobOut,
    JobStatus,
    LibraryItem,
    Me,
    PublicStatus,
    SubmitAccepted,
    TemplateOut,
    TemplateVariable,
    TooManyActiveJobs,
    Uploaded,
    err,
)
from app.web.auth import job_service, require_user, services_of
from app.web.generate import generate_error_response, generate_success_response
from app.web.job_filters import STATUS_FILTERS, safe_id
from app.web.request_docs import (
    IDEMPOTENCY_KEY_SCHEMA,
    JOB_FILTER_SCHEMA,
    JOB_ID_SCHEMA,
    SUBMIT_BODY,
    UPLOAD_BODY,
    operation_with_body,
)
from app.web.responses import error, html, is_htmx, over_quota, refused, refused_form
from app.web.uploads import MAX_UPLOAD_BYTES, UploadRejected, check_image

IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,255}")  # what IDEMPOTENCY_KEY_SCHEMA documents
# jobId on status and cancel: checked by the handlers, so that a missing one is answered in
# the API's own error shape (naming the field), not the framework's.
JobIdParam = Annotated[str | None, QueryParameter(name="jobId", required=True,
                                                  schema_extra=JOB_ID_SCHEMA)]


def template_json(t: records.Template) -> TemplateOut:
    return TemplateOut(
        slug=t.slug, name=t.name, description=t.description, credits=t.credits,
        variables=[variable_json(v) for v in t.variables],
    )


def variable_json(v: records.TemplateVariable) -> TemplateVariable:
    return TemplateVariable(
        name=v.name, label=v.shown_label, required=v.required, max_length=v.max_length,
        default=v.default or None,  # "" is no default (DESIGN: "default"?)
    )


async def library_json(request: Request[Any, Any, Any], item: records.LibraryItem) -> LibraryItem:
    return LibraryItem(key=item.key, kind=item.kind,
                       url=await services_of(request).storage.url(item.key),
                       created_at=item.created_at.isoformat())


async def job_status_json(request: Request[Any, Any, Any], job: VideoJob) -> JobStatus:
    status = public_status(job.status.value)
    if status == Status.COMPLETED and job.result_key is not None:
        return JobCompleted(status="completed",
                            url=await services_of(request).storage.url(job.result_key),
                            key=job.result_key, credits=job.credits)
    if status in (Status.FAILED, Status.CANCELED):
        return JobEnded(status=cast(EndedStatus, status), error=job.error or status)
    body = JobActive(status=cast(ActiveStatus, status), message=status_message(job),
                     queue_position=job.queue_position)
    # What the card shows, when it is known: from the provider's progress or past jobs'
    # run times (the template's rough figure is no measurement, so it is left out).
    fragments = services_of(request).fragments
    await fragments.durations.prime(services_of(request).db, [job])
    view = fragments.job_view(job)
    if view["progress_source"] != "template" and job.status != Status.FINALIZING:
        body.progress = round(view["progress"] / 100, 2)
    elif job.status == Status.FINALIZING:
        body.progress = 1.0  # rendered; only saving is left
    if view["eta"] is not None and job.status != Status.FINALIZING:
        body.eta_seconds = round(view["eta"])
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


def job_json(job: VideoJob) -> JobOut:
    charged = job.status == Status.COMPLETED
    return JobOut(
        job_id=job.id, status=cast(PublicStatus, public_status(job.status.value)),
        template=job.template, start_key=job.start_key, variables=job.variables,
        # Credits are charged only when a video is delivered: a failed or canceled job (or
        # one still running) has been charged nothing. `price` is what it costs on success.
        credits=job.credits if charged else 0, charged=charged, price=job.credits,
        created_at=job.created_at.isoformat(),
        finished_at=job.finished_at.isoformat() if job.finished_at else None,
        key=job.result_key, error=job.error,
    )


class ApiController(Controller):
    path = "/api"

    @get("/me", response_description="The signed-in person", responses={401: NOT_SIGNED_IN})
    async def me(self, request: Request[Any, Any, Any]) -> Me:
        user = await require_user(request)
        return Me(email=user.email, credits=user.balance, available=user.available)

    @get("/templates", response_description="The template catalogue")
    async def templates(self, request: Request[Any, Any, Any]) -> list[TemplateOut]:
        return [template_json(t) for t in await templates_db.list_active(services_of(request).db)]

    @get("/library", response_description="The caller's library, newest first",
         responses={401: NOT_SIGNED_IN})
    async def library(self, request: Request[Any, Any, Any]) -> list[LibraryItem]:
        user = await require_user(request)
        items = await library_db.list_for(services_of(request).db, user.id)
        return [await library_json(request, i) for i in items]

    @post("/library", request_max_body_size=MAX_UPLOAD_BYTES + 1024 * 1024,
          operation_class=operation_with_body("multipart/form-data", UPLOAD_BODY),
          response_description="Stored in the library",
          responses={400: BAD_REQUEST, 401: NOT_SIGNED_IN,
                     413: err("Over the size limit, or past the person's storage quota "
                              "(`storage_quota_exceeded` with `used`, `quota`, `size`)")})
    async def upload(
        self, request: Request[Any, Any, Any],
        data: MultipartBody[dict[str, Any]],
    ) -> Response[Uploaded]:
        user = await require_user(request)
        services = services_of(request)
        # The form as a dict: an UploadFile parameter would take the first file of any field.
        upload = data.get("file")
        if not isinstance(upload, UploadFile):
            return _upload_refused(request, error(
                400, "invalid_image", "Send one image in the multipart field `file`",
                field="file"))
        content = await upload.read()
        uid = user.id
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
        url = await services.storage.url(item.key)
        if is_htmx(request):
            return html(services.fragments.library_tile(item, url), status_code=201)
        return Response(Uploaded(key=item.key, kind=item.kind, url=url), status_code=201)

    @delete("/library", status_code=200, response_description="Deleted",
            responses={400: BAD_REQUEST, 401: NOT_SIGNED_IN, 404: NOT_FOUND})
    async def delete_item(self, request: Request[Any, Any, Any],
                          key: FromQuery[str]) -> Response[Deleted]:
        user = await require_user(request)
        services = services_of(request)
        uid = user.id
        item = await library_db.get_owned(services.db, uid, key)
        if item is None:
            return error(404, "not_found", "No such item in your library", field="key")
        await library_db.delete_owned(services.db, uid, key)
        await services.storage.delete(key)
        if item.kind == "video":  # its poster goes with it (older videos have none)
            await services.storage.delete(item.poster_key or poster_key(key))
        if services.notifier:  # the person's other tabs drop the tile too
            services.notifier.publish_library_removed(uid, key)
        if is_htmx(request):
            return html("")
        return Response(Deleted(deleted=key))

    @post("/templates/video", status_code=202,
          operation_class=operation_with_body("application/json", SUBMIT_BODY),
          response_description="Recorded; credits reserved",
          responses={400: BAD_REQUEST, 401: NOT_SIGNED_IN,
                     402: err("Not enough credits available", InsufficientCredits),
                     404: err("Unknown template, or the start image is not the caller's"),
                     413: TOO_LARGE,
                     422: err(f"The {IDEMPOTENCY_HEADER} was already used with another body"),
                     429: err("Too many active jobs", TooManyActiveJobs)})
    async def submit(
        self, request: Request[Any, Any, Any],
        idempotency_key: Annotated[str | None, HeaderParameter(
            name=IDEMPOTENCY_HEADER, required=False, schema_extra=IDEMPOTENCY_KEY_SCHEMA,
            description="Any unique value (e.g. a UUID) per submission: the same key from "
                        "the same person within 24 h returns the first answer and creates "
                        "nothing; with a different body it is refused with 422.",
        )] = None,
    ) -> Response[SubmitAccepted]:
        user = await require_user(request)
        services = services_of(request)
        if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            return error(400, "invalid", f"{IDEMPOTENCY_HEADER} must be 1 to 255 visible "
                         "ASCII characters", field=IDEMPOTENCY_HEADER)
        payload = await _submission(request)
        if isinstance(payload, Response):
            return payload
        try:
            job = await job_service(request).create(
                user.id, payload.get("templateSlug"), payload.get("startKey"),
                payload.get("variables"), services.settings.provider_name,
                idempotency_key=idempotency_key,
            )
        except IdempotentReplay as replay:
            # The first answer again. The page gets the job's current card and toast.
            first = await jobs_db.get(services.db, replay.job_id)
            if is_htmx(request) and first is not None:
                return await generate_success_response(request, user, payload, first)
            return Response(_accepted(replay.body), status_code=replay.status)
        except JobRequestError as exc:
            if is_htmx(request) and exc.body.get("field") != IDEMPOTENCY_HEADER:
                return refused_form(await generate_error_response(request, user, payload, exc),
                                    exc.status)
            return refused(exc)
        if is_htmx(request):
            return await generate_success_response(request, user, payload, job)
        return Response(_accepted(accepted_body(job.id, job.credits)), status_code=202)

    @get("/templates/video/status",
         response_description="The job's public status; while active, `progress` (0–1) and "
                              "`etaSeconds` when known (the provider's progress, or recent "
                              "run times of the template)",
         responses={400: BAD_REQUEST, 401: NOT_SIGNED_IN, 404: NOT_FOUND})
    async def status(self, request: Request[Any, Any, Any],
                     job_id: JobIdParam = None) -> Response[JobStatus]:
        user = await require_user(request)
        if job_id is None:
            return _missing_job_id()
        job = await jobs_db.get_owned(services_of(request).db, safe_id(job_id), user.id)
        if job is None:
            return error(404, "not_found", "No such job", field="jobId")
        return Response(await job_status_json(request, job))

    @post("/templates/video/cancel", status_code=200, response_description="The job, now canceled",
          responses={400: BAD_REQUEST, 401: NOT_SIGNED_IN, 404: NOT_FOUND,
                     409: err("The job had already finished, or its video had already been "
                              "rendered (it completes and is charged)",
                              AlreadyFinished | AlreadyRendered)})
    async def cancel(self, request: Request[Any, Any, Any],
                     job_id: JobIdParam = None) -> Response[JobStatus]:
        user = await require_user(request)
        if job_id is None:
            return _missing_job_id()
        services = services_of(request)
        try:
            job = await job_service(request).cancel(user.id, safe_id(job_id))
        except JobRequestError as exc:
            return refused(exc)
        if is_htmx(request):
            return html(services.fragments.job_card(job))
        return Response(await job_status_json(request, job))

    @get("/jobs", response_description="The caller's jobs",
         responses={400: BAD_REQUEST, 401: NOT_SIGNED_IN})
    async def jobs(
        self, request: Request[Any, Any, Any],
        status: Annotated[str | None, QueryParameter(schema_extra=JOB_FILTER_SCHEMA)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        offset: Annotated[int, QueryParameter(ge=0, le=100_000)] = 0,
    ) -> Response[JobList]:
        user = await require_user(request)
        if status is not None and status not in STATUS_FILTERS:
            return error(400, "invalid", f"status must be one of {', '.join(STATUS_FILTERS)}",
                         field="status")
        rows = await jobs_db.list_for(
            services_of(request).db, user.id,
            STATUS_FILTERS[status] if status else None, limit=limit + 1, offset=offset,
        )
        return Response(JobList(jobs=[job_json(j) for j in rows[:limit]],
                                next_offset=offset + limit if len(rows) > limit else None))


def _upload_refused(request: Request[Any, Any, Any], response: Response[Any]) -> Response[Any]:
    status = response.status_code
    assert status is not None  # error() and over_quota() always set one
    return refused_form(response, status) if is_htmx(request) else response


def _accepted(body: dict[str, Any]) -> SubmitAccepted:
    """The 202 answer, from the body the service made (and stored for replays)."""
    return msgspec.convert(body, SubmitAccepted)


def _missing_job_id() -> Response[Any]:
    return error(400, "invalid", "jobId is required: the jobId that POST /api/templates/video "
                 "answered", field="jobId")


async def _submission(request: Request[Any, Any, Any]) -> dict[str, Any] | Response[Any]:
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
