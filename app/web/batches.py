"""The batch API: one template and many rows of variables, submitted at once (all or
nothing), followed, canceled, retried and downloaded as a zip. Each row is a normal job,
so the single-job routes work on it too. The answers are typed (msgspec), and Litestar
writes /schema from them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream
from zipstream import ZIP_STORED, ZipStream

from app.db import batches as batches_db
from app.db.records import Batch, VideoJob
from app.jobs.batches import file_names, summary
from app.jobs.service import JobRequestError
from app.jobs.states import public_status
from app.storage.base import Storage
from app.web.answers import (
    BAD_REQUEST,
    NOT_FOUND,
    NOT_SIGNED_IN,
    TOO_LARGE,
    InsufficientCredits,
    err,
    ok,
)
from app.web.auth import batch_service, require_user, services_of
from app.web.request_docs import operation_with_body
from app.web.responses import error, is_htmx, refused, refused_form


class BatchAccepted(msgspec.Struct, rename="camel"):
    batch_id: str
    job_ids: list[str]
    credits: int
    status: str = "pending"


class BatchRetried(msgspec.Struct, rename="camel"):
    batch_id: str
    job_ids: list[str]  # the new jobs, one per failed row; empty when none was left
    credits: int


class BatchJob(msgspec.Struct, rename="camel", omit_defaults=True):
    job_id: str
    row: int  # 0-based, in the order the rows were sent
    status: str
    variables: dict[str, str]
    start_key: str
    url: str | None = None
    key: str | None = None
    error: str | None = None


class BatchOut(msgspec.Struct, rename="camel", omit_defaults=True):
    batch_id: str
    name: str
    template: str
    status: str  # pending | processing | completed | partial | failed | canceled
    total: int
    completed: int
    failed: int
    canceled: int
    running: int
    waiting: int
    credits: int  # the price of every row
    charged: int  # what the finished rows cost
    created_at: str
    jobs: list[BatchJob] | None = None


class BatchList(msgspec.Struct, rename="camel"):
    batches: list[BatchOut]
    next_offset: int | None


BATCH_BODY = Schema(
    type=OpenAPIType.OBJECT,
    required=["templateSlug", "rows"],
    properties={
        "templateSlug": Schema(type=OpenAPIType.STRING,
                               description="a slug from GET /api/templates"),
        "startKey": Schema(type=OpenAPIType.STRING,
                           description="the start image of every row without its own"),
        "name": Schema(type=OpenAPIType.STRING, max_length=100,
                       description="default: the template's name and the number of rows"),
        "rows": Schema(type=OpenAPIType.ARRAY, min_items=1, description=(
            "one job each (at most BATCH_MAX_ROWS, 100 by default); a bad row is refused "
            "with 400 naming `rows[i]…` and its 1-based `row`, and nothing is created"),
            items=Schema(type=OpenAPIType.OBJECT, required=["variables"], properties={
                "variables": Schema(type=OpenAPIType.OBJECT,
                                    additional_properties=Schema(type=OpenAPIType.STRING)),
                "startKey": Schema(type=OpenAPIType.STRING)})),
    },
)


async def _out(request: Request[Any, Any, Any], batch: Batch, jobs: dict[str, VideoJob],
               with_jobs: bool) -> BatchOut:
    s = summary(batch, jobs)
    rows = None
    if with_jobs:
        storage = services_of(request).storage
        found: list[VideoJob] = s["rows"]
        rows = [BatchJob(
            job_id=j.id, row=j.row or 0,
            status=public_status(j.status.value), variables=j.variables,
            start_key=j.start_key, key=j.result_key, error=j.error,
            url=await storage.url(j.result_key) if j.result_key else None,
        ) for j in found]
    return BatchOut(
        batch_id=batch.id, name=batch.name, template=batch.template,
        status=s["status"], total=s["total"], completed=s["completed"], failed=s["failed"],
        canceled=s["canceled"], running=s["running"], waiting=s["waiting"],
        credits=s["credits"], charged=s["charged"],
        created_at=batch.created_at.isoformat(), jobs=rows)


async def _next(chunks: AsyncIterator[bytes]) -> bytes:
    return await anext(chunks)  # a coroutine, as run_coroutine_threadsafe takes


def _pull(chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """An async byte stream read from a worker thread, a chunk at a time, on `loop`."""
    while True:
        try:
            yield asyncio.run_coroutine_threadsafe(_next(chunks), loop).result()
        except StopAsyncIteration:
            return


def _zip(storage: Storage, files: list[tuple[str, str, int | None]],
         loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """The zip, made as it is sent (Litestar iterates this in a worker thread): each video
    is read from storage in chunks, so memory does not grow with the number of videos.
    Stored, not compressed: MP4 does not compress."""
    archive = ZipStream(compress_type=ZIP_STORED)
    for name, key, size in files:
        archive.add(_pull(aiter(storage.iter_bytes(key)), loop), name, size=size)
    yield from archive


class BatchController(Controller):
    path = "/api/batches"
    tags = ["batches"]

    async def _owned(self, request: Request[Any, Any, Any],
                     batch_id: FromPath[str]) -> tuple[str, Batch | None]:
        user = await require_user(request)
        uid = user.id
        safe = batch_id if batch_id.isalnum() and len(batch_id) <= 64 else "invalid"
        return uid, await batches_db.get_owned(services_of(request).db, safe, uid)

    @post("/", status_code=202,
          operation_class=operation_with_body("application/json", BATCH_BODY),
          responses={202: ok(BatchAccepted, "Recorded: every row's credits are reserved"),
                     400: BAD_REQUEST, 401: NOT_SIGNED_IN,
                     402: err("Not enough credits for every row: nothing was created",
                              InsufficientCredits),
                     404: err("Unknown template, or a start image is not the caller's"),
                     413: TOO_LARGE})
    async def submit(self, request: Request[Any, Any, Any]) -> Response[BatchAccepted]:
        user = await require_user(request)
        services = services_of(request)
        await request.body()  # over the size limit: 413 too_large, not a JSON error
        try:
            body = await request.json()
        except Exception:
            return error(400, "invalid_json", "The body must be a JSON object", field="body")
        try:
            batch, job_ids, credits = await batch_service(request).create(
                user.id, body, services.settings.provider_name)
        except JobRequestError as exc:
            return refused(exc)
        return Response(BatchAccepted(batch_id=batch.id, job_ids=job_ids,
                                      credits=credits), status_code=202)

    @get("/", responses={200: ok(BatchList, "The caller's batches, newest first"),
                         400: BAD_REQUEST, 401: NOT_SIGNED_IN})
    async def index(self, request: Request[Any, Any, Any],
                    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
                    offset: Annotated[int, QueryParameter(ge=0, le=100_000)] = 0) -> BatchList:
        user = await require_user(request)
        db = services_of(request).db
        rows = await batches_db.list_for(db, user.id, limit + 1, offset)
        jobs = await batches_db.jobs_of(db, rows[:limit])
        return BatchList(batches=[await _out(request, b, jobs, False) for b in rows[:limit]],
                         next_offset=offset + limit if len(rows) > limit else None)

    @get("/{batch_id:str}", responses={200: ok(BatchOut, "The batch and its rows' jobs"),
                                       401: NOT_SIGNED_IN, 404: NOT_FOUND})
    async def show(self, request: Request[Any, Any, Any],
                   batch_id: FromPath[str]) -> Response[BatchOut]:
        _, batch = await self._owned(request, batch_id)
        if batch is None:
            return error(404, "not_found", "No such batch", field="batchId")
        jobs = await batches_db.jobs_of(services_of(request).db, [batch])
        return Response(await _out(request, batch, jobs, True))

    @post("/{batch_id:str}/cancel", status_code=200,
          responses={200: ok(BatchOut, "The batch: every row that could be canceled is "
                                       "(a row already rendered completes and is charged)"),
                     401: NOT_SIGNED_IN, 404: NOT_FOUND})
    async def cancel(self, request: Request[Any, Any, Any],
                     batch_id: FromPath[str]) -> Response[BatchOut]:
        uid, batch = await self._owned(request, batch_id)
        if batch is None:
            return error(404, "not_found", "No such batch", field="batchId")
        services = services_of(request)
        await batch_service(request).cancel(uid, batch)
        jobs = await batches_db.jobs_of(services.db, [batch])
        return Response(await _out(request, batch, jobs, True))

    @post("/{batch_id:str}/retry-failed", status_code=202,
          responses={202: ok(BatchRetried, "One new job per failed row, once"),
                     401: NOT_SIGNED_IN, 404: NOT_FOUND,
                     402: err("Not enough credits for every failed row: nothing was created",
                              InsufficientCredits)})
    async def retry_failed(self, request: Request[Any, Any, Any],
                           batch_id: FromPath[str]) -> Response[BatchRetried]:
        uid, batch = await self._owned(request, batch_id)
        if batch is None:
            return error(404, "not_found", "No such batch", field="batchId")
        try:
            job_ids, credits = await batch_service(request).retry_failed(uid, batch)
        except JobRequestError as exc:
            refusal = refused(exc)
            # the batch card's button: a toast says why, and no 4xx for the console
            return refused_form(refusal, exc.status) if is_htmx(request) else refusal
        return Response(BatchRetried(batch_id=batch_id, job_ids=job_ids, credits=credits),
                        status_code=202)

    @get("/{batch_id:str}/download",
         responses={200: ResponseSpec(None, media_type="application/zip",
                                      description="A zip of the finished videos, streamed; "
                                      "each named by its row and its variables"),
                    401: NOT_SIGNED_IN, 404: NOT_FOUND,
                    409: err("No row has finished yet")})
    async def download(self, request: Request[Any, Any, Any],
                       batch_id: FromPath[str]) -> Response[Any]:
        _, batch = await self._owned(request, batch_id)
        if batch is None:
            return error(404, "not_found", "No such batch", field="batchId")
        services = services_of(request)
        jobs = await batches_db.jobs_of(services.db, [batch])
        rows: list[VideoJob] = summary(batch, jobs)["rows"]
        files = [(name, j.result_key, j.result_size)
                 for name, j in zip(file_names(rows), rows, strict=True) if j.result_key]
        if not files:
            return error(409, "nothing_finished", "No video of this batch has finished yet")
        filename = f"{batch.name}.zip"
        return Stream(_zip(services.storage, files, asyncio.get_running_loop()),
                      media_type="application/zip", headers={
                          "Content-Disposition": "attachment; filename*=UTF-8''"
                                                 + quote(filename, safe="")})
