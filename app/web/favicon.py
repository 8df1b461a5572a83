"""GET /favicon.ico: browsers ask for it on pages that name no icon (the JSON schema, a
video opened on its own); the pages name /static/favicon.svg, so send them there."""

from __future__ import annotations

from litestar import get
from litestar.response import Redirect

ICON = "/static/favicon.svg"


@get("/favicon.ico", include_in_schema=False)
async def favicon() -> Redirect:
    return Redirect(ICON, status_code=301)
