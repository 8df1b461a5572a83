"""Small helpers for the shape of responses."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from pydantic import ByteSize

from app.jobs.service import JobRequestError
from app.web.answers import ApiError

REFUSED_HEADER = "X-Refused-Status"  # see refused_form()

# Refusals and htmx answers are Response[Any]: they leave handlers whose annotation names
# the JSON success body (Response[SomeStruct]), from which /schema is written.


def error(status: int, code: str, message: str, field: str | None = None) -> Response[Any]:
    """An `ApiError` answer."""
    return Response(ApiError(error=code, message=message, field=field or None),
                    status_code=status)


def refused(exc: JobRequestError) -> Response[Any]:
    """The service's refusal as it made it (an ApiError, or one of the shapes with detail)."""
    return Response(exc.body, status_code=exc.status)


def html(content: str, status_code: int = 200) -> Response[Any]:
    """What an htmx request gets instead of the JSON body: the fragment to swap in."""
    return Response(content, status_code=status_code, media_type="text/html")


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def human_bytes(n: int) -> str:
    """'18.0 MiB'."""
    return ByteSize(n).human_readable(separator=" ")


def over_quota(used: int, size: int, quota: int) -> Response[Any]:
    """413 for an upload that would take a person's library over STORAGE_QUOTA: the field,
    the numbers, and what to do."""
    message = (f"Not enough storage: your library uses {human_bytes(used)} of "
               f"{human_bytes(quota)}, and this file is {human_bytes(size)}. Delete something "
               "from your library to make room.")
    return Response({"error": "storage_quota_exceeded", "message": message, "field": "file",
                     "used": used, "quota": quota, "size": size}, status_code=413)


def refused_form(response: Response[Any], status: int) -> Response[Any]:
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
