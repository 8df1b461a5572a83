"""What /schema documents that Litestar cannot infer: the request bodies the handlers read
themselves, and the extra schema of parameters the handlers check themselves.

A body declared as a typed `data` parameter would be parsed and validated by Litestar, with
its own error shape (no `field`) and without the url-encoded form the pages post to the
same route, so POST /api/templates/video reads its body itself (app/web/api.py
_submission) and documents it from `SubmitBody`. The answers are in app/web/answers.py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import msgspec
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType


# POST /api/templates/video as JSON (the generate form sends the same fields, the variables
# as `variables.NAME`); checked by JobService.create, which names the field.
class SubmitBody(msgspec.Struct, rename="camel"):
    template_slug: Annotated[str, msgspec.Meta(description="a slug from GET /api/templates")]
    start_key: Annotated[str, msgspec.Meta(
        description="the key of an image in the caller's library")]
    variables: Annotated[dict[str, str], msgspec.Meta(
        description="the template's variables by name")]


def struct_schema(struct: type[msgspec.Struct]) -> Schema:
    """A Struct's JSON Schema (msgspec writes it) as an OpenAPI Schema, inlined (so with
    no title)."""
    schema = msgspec.json.schema(struct)["$defs"][struct.__name__]
    return _as_schema({k: v for k, v in schema.items() if k != "title"})


def _as_schema(js: dict[str, Any]) -> Schema:
    kwargs: dict[str, Any] = {}
    for key, value in js.items():
        if key == "properties":
            value = {name: _as_schema(v) for name, v in value.items()}
        elif key in ("items", "additionalProperties"):
            value = _as_schema(value)
        elif key == "type":
            value = OpenAPIType(value)
        kwargs[re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()] = value
    return Schema(**kwargs)


@dataclass
class _WithBody(Operation):
    body: ClassVar[RequestBody | None] = None

    def __post_init__(self) -> None:
        self.request_body = self.body


def operation_with_body(media_type: str, schema: Schema) -> type[Operation]:
    """An Operation class that documents a request body the handler reads itself."""
    body = RequestBody(content={media_type: OpenAPIMediaType(schema=schema)}, required=True)
    return type("OperationWithBody", (_WithBody,), {"body": body})


SUBMIT_BODY = struct_schema(SubmitBody)
UPLOAD_BODY = Schema(
    type=OpenAPIType.OBJECT,
    required=["file"],
    properties={"file": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY,
                               description="a PNG, JPEG or WebP image")},
)
# Read as raw bytes: the signature is over the body exactly as sent.
WEBHOOK_BODY = Schema(
    type=OpenAPIType.OBJECT,
    description="fal's webhook body, signed in the X-Fal-Webhook-* headers",
    properties={"request_id": Schema(type=OpenAPIType.STRING),
                "gateway_request_id": Schema(type=OpenAPIType.STRING),
                "status": Schema(type=OpenAPIType.STRING, enum=["OK", "ERROR"]),
                "payload": Schema(type=OpenAPIType.OBJECT), "error": Schema()},
)

# -- parameters the handlers check themselves (so a bad one is answered in the API's error
# shape, naming it) -------------------------------------------------------------------------

# The one query parameter with a fixed set of values.
JOB_FILTERS = ["active", "completed", "failed", "canceled"]
JOB_FILTER_SCHEMA = {"type": OpenAPIType.STRING, "one_of": None, "enum": JOB_FILTERS}
# jobId on status and cancel: required (a missing one is a 400 naming `jobId`).
JOB_ID_SCHEMA = {"type": OpenAPIType.STRING, "one_of": None,
                 "description": "the jobId that POST /api/templates/video answered"}
# The Idempotency-Key header of POST /api/templates/video (a bad one: 400).
IDEMPOTENCY_KEY_SCHEMA = {"type": OpenAPIType.STRING, "one_of": None, "min_length": 1,
                          "max_length": 255, "pattern": "^[!-~]+$"}
