"""Local-storage files, served only to their owner (S3 storage hands out presigned URLs)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath
from litestar.response import File

from app.db import library as library_db
from app.web.auth import current_user, services_of
from app.web.responses import error


@get("/media/{key:path}", include_in_schema=False)
async def media(request: Request[Any, Any, Any], key: FromPath[str]) -> File | Response[Any]:
    user = await current_user(request)
    key = key.lstrip("/")
    if user is None:
        return error(401, "not_signed_in", "Sign in first")
    services = services_of(request)
    storage = services.storage
    owned = await library_db.get_owned(services.db, user.id, key)
    content_type = owned.content_type if owned else None
    if owned is None and await library_db.poster_owned(services.db, user.id, key):
        content_type = "image/jpeg"  # a video's poster goes with the video
    if content_type is None or not hasattr(storage, "path_for"):
        return error(404, "not_found", "No such file")
    path = storage.path_for(key)
    if not path.is_file():
        return error(404, "not_found", "No such file")
    return File(path=path, media_type=content_type, content_disposition_type="inline",
                headers={"Cache-Control": "private, max-age=3600",
                         "X-Content-Type-Options": "nosniff"})
