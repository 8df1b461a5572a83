"""/admin/backups: the recent backups and "Back up now" (admins, like every admin page), and
POST /admin/backups/run for `python -m app backup` on this machine (BACKUP_TOKEN).

Everyone else gets the unknown route's 404, as on the other admin pages. The token route
also answers 404 unless the token matches and the connection comes from a loopback address
without proxy headers: a reverse proxy on the same machine connects from 127.0.0.1, and what
it forwards must not count as local."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromQuery
from litestar.response import Redirect, Template
from litestar.types import ASGIApp, Receive, Scope, Send

from app.backup.archive import NAME
from app.backup.service import BackupBusy, BackupService
from app.observability.logging import get_logger
from app.web.admin import admin_only

log = get_logger("reelforge.backup")


def _backups(request: Request) -> BackupService:
    return request.app.state.backups


def token_only(app: ASGIApp) -> ASGIApp:
    """Route middleware: BACKUP_TOKEN as a bearer token, from this machine, or the 404."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        token = scope["litestar_app"].state.services.settings.backup_token
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode("latin-1")
        client = (scope.get("client") or ("", 0))[0]
        if not (token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
                and _loopback(client) and b"forwarded" not in headers
                and b"x-forwarded-for" not in headers):
            raise NotFoundException()
        await app(scope, receive, send)

    return middleware


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _mib(size: int | None) -> str:
    if size is None:
        return "-"
    return f"{size / 1024 / 1024:.1f} MiB" if size >= 1024 * 1024 else f"{size / 1024:.1f} KiB"


def _view(item: dict[str, Any]) -> dict[str, Any]:
    m = item["manifest"]
    tables = m.get("tables", {})
    media = m.get("media", {})
    return {
        "name": item["name"], "location": item["location"], "error": item["error"],
        "created_at": (m.get("created_at") or "")[:19].replace("T", " "),
        "trigger": m.get("trigger", "?"), "size": _mib(item["bytes"]),
        "people": tables.get("user", 0), "jobs": tables.get("video_job", 0),
        "ledger": tables.get("ledger", 0), "records": m.get("rows", 0),
        "media": (f"{media.get('files', 0)} files, {media.get('new_files', 0)} new"
                  if media.get("storage") == "local" else "in the bucket"),
        "seconds": m.get("timings", {}).get("total_s"),
    }


class BackupController(Controller):
    path = "/admin/backups"
    include_in_schema = False

    @get("/", middleware=[admin_only], name="admin_backups")
    async def page(self, request: Request, done: FromQuery[str | None] = None) -> Template:
        written = done if done and NAME.fullmatch(done) else None
        return await _page(request, notice=f"Backup {written} was written." if written else None)

    @post("/", middleware=[admin_only])
    async def back_up_now(self, request: Request) -> Response | Template:
        admin = request.scope["state"]["admin_user"]
        try:
            result = await _backups(request).run("admin")
        except BackupBusy as exc:
            return await _page(request, error=str(exc), status=409)
        except Exception as exc:  # shown to the admin; the log has the details
            return await _page(request, error=f"The backup failed: {exc}", status=500)
        log.info("admin.backup", admin_id=admin.id, name=result.name)
        return Redirect(f"/admin/backups?done={result.name}", status_code=303)

    @post("/run", middleware=[token_only], exclude_from_csrf=True)
    async def run(self, request: Request) -> Response:
        try:
            result = await _backups(request).run("cli")
        except BackupBusy as exc:
            return Response({"error": "busy", "message": str(exc)}, status_code=409)
        return Response(result.as_json() | {"text": result.text()}, status_code=200)


async def _page(request: Request, *, notice: str | None = None, error: str | None = None,
                status: int = 200) -> Template:
    backups = _backups(request)
    settings = backups.settings
    return Template(template_name="pages/admin_backups.html", status_code=status, context={
        "user": request.scope["state"]["admin_user"], "active_nav": "admin",
        "backups": [_view(b) for b in await backups.recent()],
        "state": await backups.state(), "notice": notice, "error": error,
        "where": [d.label for d in backups.destinations()],
        "interval": settings.backup_interval_hours if backups.scheduled else 0,
        "keep": settings.backup_keep,
    })
