"""fal's webhook: a verified call only makes the job due now; the driver does the work,
so a redelivered or late webhook can never finish, store or charge anything twice."""

from __future__ import annotations

import logging

from litestar import Request, Response, post

from app.db import jobs as jobs_db
from app.jobs.service import ACTIVE_VALUES
from app.web.auth import services_of
from app.web.responses import error
from app.web.schemas import TOO_LARGE, WEBHOOK_BODY, WebhookAck, err, ok, operation_with_body

log = logging.getLogger("reelforge.webhooks")
MAX_WEBHOOK_BODY = 2 * 1024 * 1024


@post("/api/webhooks/fal", request_max_body_size=MAX_WEBHOOK_BODY, status_code=200,
      operation_class=operation_with_body("application/json", WEBHOOK_BODY),
      responses={200: ok(WebhookAck, description="Verified (the job is due now)"),
                 401: err("Unsigned, forged, altered or replayed"),
                 404: err("Webhooks are not enabled (VIDEO_PROVIDER is not fal)"),
                 413: TOO_LARGE,
                 503: err("The signing keys could not be fetched; fal retries later")})
async def fal_webhook(request: Request) -> Response:
    from app.providers.fal_webhook import JwksUnavailable, WebhookRejected

    services = services_of(request)
    if services.webhooks is None:
        return error(404, "not_found", "Webhooks are not enabled (VIDEO_PROVIDER is not fal)")
    body = await request.body()
    try:
        hook = await services.webhooks.verify(request.headers, body)
    except JwksUnavailable as exc:
        return error(503, "jwks_unavailable", exc.reason)
    except WebhookRejected as exc:
        log.warning("webhook rejected: %s", exc.reason)
        return error(401, "invalid_signature", "The webhook signature is not valid")
    db = services.db
    job = await jobs_db.by_request_id(db, hook.request_id)
    if job is None and hook.gateway_request_id:
        job = await jobs_db.by_request_id(db, hook.gateway_request_id)
    if job is None:
        return Response({"ok": True, "job": None})  # not ours (or long gone): nothing to do
    if await jobs_db.mark_provider_done(db, str(job["id"].id), ACTIVE_VALUES):
        services.driver.wake()
    return Response({"ok": True})
