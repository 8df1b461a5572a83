from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from app.web.answers import Health, ok
from app.web.auth import services_of


@get("/health", response_description="Up, database reachable",
     responses={503: ok(Health, description="The database is unreachable")})
async def health(request: Request[Any, Any, Any]) -> Response[Health]:
    try:
        await services_of(request).db.read_one("RETURN 1")
    except Exception:
        return Response(Health(status="error", database="unreachable"), status_code=503)
    return Response(Health(status="ok"))
