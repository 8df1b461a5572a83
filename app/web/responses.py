"""Small helpers for the shape of responses."""

from __future__ import annotations

from litestar import Request, Response


def error(status: int, code: str, message: str, field: str | None = None) -> Response:
    body = {"error": code, "message": message}
    if field:
        body["field"] = field
    return Response(body, status_code=status)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"
