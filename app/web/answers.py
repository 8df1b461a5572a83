"""What the JSON API answers: one msgspec Struct per body. The handlers return these, so
Litestar serialises them and writes /schema/openapi.json from the handlers' annotations.

Every JSON error is an `ApiError`: `{"error": code, "message": text, "field"?: the offending
field}`, sometimes with more detail (402: `required`/`available`; 429: `limit`; 409:
`status`; a parameter that failed validation: `detail`). Errors leave a handler through
Response(...) or an exception, so they are documented with `responses=` (`err`). The pages'
own htmx form posts (header `HX-Request: true`) are not JSON clients: a refused submission
or upload answers them 200 with what the page shows and the status above in
`X-Refused-Status` (app/web/api.py refused_form).

`omit_defaults=True` marks bodies with fields that are absent (not null) when unknown."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from msgspec import UNSET, UnsetType

# -- errors --------------------------------------------------------------------------------


class ApiError(msgspec.Struct, omit_defaults=True):
    error: str
    message: str
    field: str | None = None
    detail: Any = None


class InsufficientCredits(msgspec.Struct):
    error: Literal["insufficient_credits"]
    message: str
    required: int
    available: int


class TooManyActiveJobs(msgspec.Struct):
    error: Literal["too_many_active_jobs"]
    message: str
    limit: int


class AlreadyFinished(msgspec.Struct):
    error: Literal["already_finished"]
    message: str
    status: str


class AlreadyRendered(msgspec.Struct):
    """A cancel after the provider finished rendering: the job completes and is charged."""
    error: Literal["already_rendered"]
    message: str
    status: str


def ok(container: Any, description: str) -> ResponseSpec:
    """A success answer other than the handler's own status code (that one comes from the
    return annotation and `response_description`)."""
    return ResponseSpec(container, description=description, generate_examples=False)


def err(description: str, container: Any = ApiError) -> ResponseSpec:
    return ResponseSpec(container, description=description, generate_examples=False)


BAD_REQUEST = err("A parameter or the body is invalid; `field` names it when it can")
NOT_SIGNED_IN = err("Not signed in")
NOT_FOUND = err("Not found, or not the caller's")
TOO_LARGE = err("The body is over the size limit")

# -- the signed-in person and the catalogue -------------------------------------------------


class Me(msgspec.Struct):
    email: str
    credits: int
    available: int


class TemplateVariable(msgspec.Struct, rename="camel", omit_defaults=True):
    name: str
    label: str
    required: bool
    max_length: int | None  # always sent, null when the variable has no limit
    # What the form starts with; present only when the template has a default.
    default: str | None = None


class TemplateOut(msgspec.Struct):
    slug: str
    name: str
    description: str
    credits: int
    variables: list[TemplateVariable]


# -- the library ----------------------------------------------------------------------------


class LibraryItem(msgspec.Struct, rename="camel"):
    key: str
    kind: Literal["image", "video"]
    url: str
    created_at: str


class Uploaded(msgspec.Struct):
    key: str
    kind: Literal["image", "video"]
    url: str


class Deleted(msgspec.Struct):
    deleted: str


# -- jobs -----------------------------------------------------------------------------------

# A job's public status (app/jobs/states.py public_status): while it runs, once it ended.
ActiveStatus = Literal["pending", "processing"]
EndedStatus = Literal["failed", "canceled"]
PublicStatus = Literal["pending", "processing", "completed", "failed", "canceled"]


class SubmitAccepted(msgspec.Struct, rename="camel"):
    job_id: str
    status: Literal["pending"]
    credits: int
    message: str


class JobActive(msgspec.Struct, rename="camel", omit_defaults=True):
    status: ActiveStatus
    message: str
    queue_position: int | None = None
    # How far along, 0–1: the provider's own progress when it reports one, otherwise the
    # time elapsed against the median run time of recent jobs of that template. Absent
    # until something is known.
    progress: float | None = None
    # Seconds left (≥ 0), estimated the same way; absent when unknown.
    eta_seconds: int | None = None


class JobCompleted(msgspec.Struct):
    status: Literal["completed"]
    url: str
    key: str
    credits: int


class JobEnded(msgspec.Struct):
    status: EndedStatus
    error: str


JobStatus = JobActive | JobCompleted | JobEnded


class JobOut(msgspec.Struct, rename="camel"):
    job_id: str
    status: PublicStatus
    template: str
    start_key: str
    variables: dict[str, str]
    # Credits charged for this job: its price once completed (charged on delivery), 0
    # while active and for failed or canceled jobs, which are never charged.
    credits: int
    charged: bool  # true once the job's price has been taken from the balance
    price: int  # what the job costs (reserved while it runs, charged only on success)
    created_at: str
    finished_at: str | None
    key: str | None
    error: str | None


class JobList(msgspec.Struct, rename="camel"):
    jobs: list[JobOut]
    next_offset: int | None


# -- health and fal's webhook ---------------------------------------------------------------


class Health(msgspec.Struct, omit_defaults=True):
    status: Literal["ok", "error"]
    database: str | None = None


class WebhookAck(msgspec.Struct, omit_defaults=True):
    ok: bool
    # null: the request id is not one of our jobs (UNSET: absent; documented as null)
    job: Annotated[None | UnsetType, msgspec.Meta(
        extra_json_schema={"extra": {"type": "null", "one_of": None}})] = UNSET
    replay: bool | None = None  # true: this request id was already accepted; nothing done
