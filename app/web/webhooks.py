"""fal's webhook: a verified call only makes the job due now; the driver does the work,
so a redelivered or late webhook can never finish, store or charge anything twice. Each
accepted request id is remembered in the database for REMEMBER_SECONDS: a replay (of a
signed call still inside its 5-minute window), to this process or another, is answered 200
and does nothing at all."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response, post

from app.db import jobs as jobs_db
from app.db.connection import Thrown
from app.jobs.service import ACTIVE_VALUES
from app.web.answers import TOO_LARGE, WebhookAck, err
from app.web.auth import services_of
from app.web.request_docs import WEBHOOK_BODY, operation_with_body
from app.web.responses import error

log = logging.getLogger("reelforge.webhooks")
MAX_WEBHOOK_BODY = 2 * 1024 * 1024
# A signed call is accepted up to 5 minutes either side of its timestamp, so it can be
# replayed for at most 10 minutes after it was accepted; remembering its id for 3 hours
# also turns fal's own redeliveries (10 over 2 hours) into no-ops.
REMEMBER_SECONDS = 3 * 3600


@post("/api/webhooks/fal", request_max_body_size=MAX_WEBHOOK_BODY, status_code=200,
      operation_class=operation_with_body("application/json", WEBHOOK_BODY),
      response_description="Verified (the job is due now)",
      responses={401: err("Unsigned, forged, altered or stale (outside the 5-minute "
                          "window); a replay inside it is answered 200 and ignored"),
                 403: err("Signed by fal for another fal account than FAL_USER_ID"),
                 404: err("Webhooks are not enabled (VIDEO_PROVIDER is not fal)"),
                 413: TOO_LARGE,
                 503: err("The signing keys could not be fetched; fal retries later")})
async def fal_webhook(request: Request[Any, Any, Any]) -> Response[WebhookAck]:
    from app.providers.fal_webhook import JwksUnavailable, WebhookRejected, WrongUser

    services = services_of(request)
    if services.webhooks is None:
        return error(404, "not_found", "Webhooks are not enabled (VIDEO_PROVIDER is not fal)")
    body = await request.body()
    try:
        hook = await services.webhooks.verify(request.headers, body)
    except JwksUnavailable as exc:
        return error(503, "jwks_unavailable", exc.reason)
    except WrongUser as exc:
        log.warning("webhook refused: %s", exc.reason)
        return error(403, "wrong_user", "The webhook is for another fal account")
    except WebhookRejected as exc:
        log.warning("webhook rejected: %s", exc.reason)
        return error(401, "invalid_signature", "The webhook signature is not valid")
    db = services.db
    job = await jobs_db.by_request_id(db, hook.request_id)
    if job is None and hook.gateway_request_id:
        job = await jobs_db.by_request_id(db, hook.gateway_request_id)
    if job is None:
        return Response(WebhookAck(ok=True, job=None))  # not ours (or long gone): nothing to do
    note = ("fal's webhook: the render finished" if hook.status == "OK"
            else "fal's webhook: the render failed")
    try:
        status = await jobs_db.accept_webhook(db, hook.request_id, job.id,
                                              ACTIVE_VALUES, REMEMBER_SECONDS, note)
    except Thrown as exc:
        if exc.code != "webhook_replayed":
            raise
        return Response(WebhookAck(ok=True, replay=True))
    if status in ACTIVE_VALUES and services.driver:
        services.driver.wake()
    return Response(WebhookAck(ok=True))
