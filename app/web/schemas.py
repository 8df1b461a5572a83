"""The shapes of the JSON API, for the OpenAPI document at /schema/openapi.json.

The handlers in app/web/api.py build plain dicts (they also answer htmx with HTML); these
dataclasses only describe what goes over the wire, so the schema can be checked against the
running app (tests/integration/test_schema_fuzz.py). Every JSON error is an `ApiError`:
`{"error": code, "message": text, "field"?: the offending field}`, sometimes with more
detail (402: `required`/`available`; 429: `limit`; 409: `status`; a parameter that failed
validation: `detail`). The pages' own htmx form posts (header `HX-Request: true`) are not
JSON clients: a refused submission or upload answers them 200 with what the page shows and
the status above in `X-Refused-Status` (app/web/responses.py refused_form)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType

# -- errors --------------------------------------------------------------------------------


@dataclass
class ApiError:
    error: str
    message: str
    field: str | None = None
    detail: Any = None


@dataclass
class InsufficientCredits:
    error: Literal["insufficient_credits"]
    message: str
    required: int
    available: int


@dataclass
class TooManyActiveJobs:
    error: Literal["too_many_active_jobs"]
    message: str
    limit: int


@dataclass
class AlreadyFinished:
    error: Literal["already_finished"]
    message: str
    status: str


@dataclass
class AlreadyRendered:
    """A cancel after the provider finished rendering: the job completes and is charged."""
    error: Literal["already_rendered"]
    message: str
    status: str


def ok(container: Any, description: str) -> ResponseSpec:
    return ResponseSpec(container, description=description, generate_examples=False)


def err(description: str, container: Any = ApiError) -> ResponseSpec:
    return ResponseSpec(container, description=description, generate_examples=False)


# The one query parameter with a fixed set of values (checked by the handler, which names it).
JOB_FILTERS = ["active", "completed", "failed", "canceled"]
JOB_FILTER_SCHEMA = {"type": OpenAPIType.STRING, "one_of": None, "enum": JOB_FILTERS}
# jobId on status and cancel: required (a missing one is a 400 naming `jobId`, checked by
# the handler so it answers in the ApiError shape).
JOB_ID_SCHEMA = {"type": OpenAPIType.STRING, "one_of": None,
                 "description": "the jobId that POST /api/templates/video answered"}
# The Idempotency-Key header of POST /api/templates/video (checked by the handler: 400).
IDEMPOTENCY_KEY_SCHEMA = {"type": OpenAPIType.STRING, "one_of": None, "min_length": 1,
                          "max_length": 255, "pattern": "^[!-~]+$"}


BAD_REQUEST = err("A parameter or the body is invalid; `field` names it when it can")
NOT_SIGNED_IN = err("Not signed in")
NOT_FOUND = err("Not found, or not the caller's")
TOO_LARGE = err("The body is over the size limit")

# -- bodies --------------------------------------------------------------------------------


@dataclass
class Me:
    email: str
    credits: int
    available: int


@dataclass
class TemplateVariable:
    name: str
    label: str
    required: bool
    maxLength: int | None  # noqa: N815 - the wire name
    # What the form starts with; present only when the template has a default.
    default: str | None = None


@dataclass
class TemplateOut:
    slug: str
    name: str
    description: str
    credits: int
    variables: list[TemplateVariable]


@dataclass
class LibraryItem:
    key: str
    kind: Literal["image", "video"]
    url: str
    createdAt: str  # noqa: N815


@dataclass
class Uploaded:
    key: str
    kind: Literal["image", "video"]
    url: str


@dataclass
class Deleted:
    deleted: str


@dataclass
class SubmitAccepted:
    jobId: str  # noqa: N815
    status: Literal["pending"]
    credits: int
    message: str


@dataclass
class JobActive:
    status: Literal["pending", "processing"]
    message: str
    queuePosition: int | None = None  # noqa: N815
    # How far along, 0–1: the provider's own progress when it reports one, otherwise the
    # time elapsed against the median run time of recent jobs of that template. Absent
    # until something is known.
    progress: float | None = None
    # Seconds left (≥ 0), estimated the same way; absent when unknown.
    etaSeconds: int | None = None  # noqa: N815


@dataclass
class JobCompleted:
    status: Literal["completed"]
    url: str
    key: str
    credits: int


@dataclass
class JobEnded:
    status: Literal["failed", "canceled"]
    error: str


JobStatus = JobActive | JobCompleted | JobEnded


@dataclass
class JobOut:
    jobId: str  # noqa: N815
    status: Literal["pending", "processing", "completed", "failed", "canceled"]
    template: str
    startKey: str  # noqa: N815
    variables: dict[str, str]
    # Credits charged for this job: its price once completed (charged on delivery), 0
    # while active and for failed or canceled jobs, which are never charged.
    credits: int
    charged: bool  # true once the job's price has been taken from the balance
    price: int  # what the job costs (reserved while it runs, charged only on success)
    createdAt: str  # noqa: N815
    finishedAt: str | None  # noqa: N815
    key: str | None
    error: str | None


@dataclass
class JobList:
    jobs: list[JobOut]
    nextOffset: int | None  # noqa: N815


@dataclass
class Health:
    status: Literal["ok", "error"]
    database: str | None = None


@dataclass
class WebhookAck:
    ok: bool
    job: None = field(default=None)
    replay: bool | None = None  # true: this request id was already accepted; nothing done


# -- request bodies that the handlers read themselves --------------------------------------
# (Declaring them as a `data` parameter would make Litestar parse and validate them, with
# other error shapes and without the form fallback the pages use.)


@dataclass
class _WithBody(Operation):
    body: ClassVar[RequestBody | None] = None

    def __post_init__(self) -> None:
        self.request_body = self.body


def operation_with_body(media_type: str, schema: Schema) -> type[Operation]:
    """An Operation class that documents a request body the handler reads itself."""
    body = RequestBody(content={media_type: OpenAPIMediaType(schema=schema)}, required=True)
    return type("OperationWithBody", (_WithBody,), {"body": body})


SUBMIT_BODY = Schema(
    type=OpenAPIType.OBJECT,
    required=["templateSlug", "startKey", "variables"],
    properties={
        "templateSlug": Schema(type=OpenAPIType.STRING,
                               description="a slug from GET /api/templates"),
        "startKey": Schema(type=OpenAPIType.STRING,
                           description="the key of an image in the caller's library"),
        "variables": Schema(type=OpenAPIType.OBJECT,
                            additional_properties=Schema(type=OpenAPIType.STRING),
                            description="the template's variables by name"),
    },
)
UPLOAD_BODY = Schema(
    type=OpenAPIType.OBJECT,
    required=["file"],
    properties={"file": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY,
                               description="a PNG, JPEG or WebP image")},
)
WEBHOOK_BODY = Schema(
    type=OpenAPIType.OBJECT,
    description="fal's webhook body, signed in the X-Fal-Webhook-* headers",
    properties={"request_id": Schema(type=OpenAPIType.STRING),
                "gateway_request_id": Schema(type=OpenAPIType.STRING),
                "status": Schema(type=OpenAPIType.STRING, enum=["OK", "ERROR"]),
                "payload": Schema(type=OpenAPIType.OBJECT), "error": Schema()},
)
