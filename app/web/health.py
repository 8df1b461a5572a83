from __future__ import annotations

from litestar import Request, Response, get

from app.web.auth import services_of
from app.web.schemas import Health, ok


@get("/health", responses={
    200: ok(Health, description="Up, database reachable"),
    503: ok(Health, description="The database is unreachable")})
async def health(request: Request) -> Response:
    try:
        await services_of(request).db.read_one("RETURN 1")
    except Exception:
        return Response({"status": "error", "database": "unreachable"}, status_code=503)
    return Response({"status": "ok"})
