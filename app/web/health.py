from __future__ import annotations

from litestar import Request, Response, get

from app.web.auth import services_of


@get("/health")
async def health(request: Request) -> Response:
    try:
        await services_of(request).db.read_one("RETURN 1")
    except Exception:
        return Response({"status": "error", "database": "unreachable"}, status_code=503)
    return Response({"status": "ok"})
