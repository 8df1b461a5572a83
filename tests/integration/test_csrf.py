"""Every unsafe route needs the CSRF token. The list of routes comes from the app's own route
table, so a route added later is covered without anyone remembering to add it here."""

from __future__ import annotations

import re

import pytest
from litestar.routes import ASGIRoute, HTTPRoute

from app.db import users as users_db
from app.main import create_app
from tests.helpers import Account
from tests.integration.api_support import (
    count,
    image_bytes,
    in_app,
    media_files,
    running_app,
    sharing,
    user_id,
    user_row,
)

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# fal can't send a token (its calls are signed); /events is a read-only stream that never
# reads a body (excluded in create_app: the CSRF middleware's form parsing crashes there);
# /admin/backups/run takes a bearer BACKUP_TOKEN from loopback only, never a cookie, so a
# cross-site form cannot use it (tests/integration/test_backup.py covers its refusals).
NOT_CSRF_PROTECTED = {"/api/webhooks/fal", "/events", "/admin/backups/run"}


def unsafe_routes(app) -> list[tuple[str, str]]:
    """(method, path) for every unsafe method of every route but NOT_CSRF_PROTECTED.
    An @asgi route answers any method, so it is listed with each unsafe one."""
    found = set()
    for route in app.routes:
        if route.path in NOT_CSRF_PROTECTED:
            continue
        if isinstance(route, HTTPRoute):
            methods = set(route.methods) & UNSAFE
        elif isinstance(route, ASGIRoute):
            methods = UNSAFE
        else:
            continue
        found.update((m, route.path) for m in methods)
    return sorted(found, key=lambda mp: (mp[1], mp[0]))


def test_the_route_table_lists_the_known_unsafe_routes(settings):
    routes = unsafe_routes(create_app(settings))
    assert len(routes) >= 7
    for known in [("POST", "/login"), ("POST", "/signup"), ("POST", "/logout"),
                  ("POST", "/api/library"), ("DELETE", "/api/library"),
                  ("POST", "/api/templates/video"), ("POST", "/api/templates/video/cancel")]:
        assert known in routes
    assert all(path != "/api/webhooks/fal" for _, path in routes)
    assert all(m in UNSAFE for m, _ in routes)


def _fill(path: str, job_id: str) -> str:
    """A concrete path for a route pattern such as /media/{key:path} or /x/{job_id:str}:
    a key-like path for path parameters, alice's job id for any other."""
    path = re.sub(r"\{[^}:]+:path\}", "users/x/library/y.png", path)
    return re.sub(r"\{[^}]+\}", job_id, path)


def _snapshot(client, settings, email: str) -> dict:
    user = user_row(client, email)
    db = client.app.state.services.db
    jobs = client.blocking_portal.call(db.read_one, "SELECT VALUE status FROM video_job")
    return {
        "tables": {t: count(client, t) for t in ("user", "ledger", "library", "video_job",
                                                 "job_event")},
        "jobs": sorted(jobs), "balance": user.balance, "reserved": user.reserved,
        "files": media_files(settings),
    }


@pytest.fixture
async def setup(settings):
    """An idle app (jobs stay pending) and alice, an admin (so the admin routes are reached
    rather than hidden behind their 404), with one image and one pending job."""
    async with running_app(settings, idle=True) as client:
        alice = await Account.signup(client, "alice@example.com")
        in_app(client, users_db.set_admin, client.app.state.services.db,
               user_id(client, alice.email), True)
        key = await alice.upload(image_bytes())
        r = await alice.submit(key)
        assert r.status_code == 202, r.text
        yield client, alice, key, r.json()["jobId"]


def _request_for(method: str, path: str, key: str, job_id: str) -> dict:
    """A request that would change something if it got through (no CSRF token in it)."""
    if path == "/api/library" and method == "POST":
        return {"files": {"file": ("x.png", image_bytes(), "image/png")}}
    if path == "/api/library":
        return {"params": {"key": key}}
    if path == "/api/templates/video":
        return {"json": {"templateSlug": "car-commercial", "startKey": key,
                         "variables": {"BRAND": "A", "MODEL": "B"}}}
    if path == "/api/templates/video/cancel":
        return {"params": {"jobId": job_id}}
    if path in ("/login", "/signup"):
        return {"data": {"email": "mallory@example.com", "password": "correct-horse-1"}}
    return {"data": {"anything": "1"}}


async def test_every_unsafe_route_refuses_a_request_without_the_token(setup, settings):
    client, alice, key, job_id = setup
    routes = unsafe_routes(client.app)
    assert ("DELETE", "/api/library") in routes
    before = _snapshot(client, settings, alice.email)
    assert before["tables"]["library"] == 1 and before["jobs"] == ["pending"]
    for method, path in routes:
        r = await client.request(method, _fill(path, job_id), follow_redirects=False,
                                 **_request_for(method, path, key, job_id))
        assert r.status_code == 403, (method, path, r.status_code, r.text[:200])
    assert _snapshot(client, settings, alice.email) == before
    # still signed in (the logout without a token did nothing) and nothing was reserved
    me = await alice.me()
    assert me["email"] == alice.email and me["available"] == 1000 - 80


async def test_a_wrong_or_foreign_token_is_refused_too(setup, settings):
    client, alice, key, job_id = setup
    before = _snapshot(client, settings, alice.email)
    async with sharing(client) as other:
        await other.get("/login")
        foreign = other.cookies.get("csrftoken")  # a valid token, but for another browser
    assert foreign and foreign != client.cookies.get("csrftoken")
    for token in [foreign, "0" * 128, "", client.cookies.get("csrftoken")[:-2] + "00"]:
        r = await client.delete("/api/library", params={"key": key},
                                headers={"x-csrftoken": token})
        assert r.status_code == 403, token
        r = await client.post("/api/templates/video/cancel", params={"jobId": job_id},
                              headers={"x-csrftoken": token})
        assert r.status_code == 403, token
        r = await client.post("/api/library", data={"_csrf_token": token},
                              files={"file": ("x.png", image_bytes(), "image/png")})
        assert r.status_code == 403, token
    assert _snapshot(client, settings, alice.email) == before


async def test_the_token_in_the_header_or_the_form_field_is_accepted(setup, settings):
    """The positive control: the same requests with the token do go through."""
    client, alice, key, job_id = setup
    token = client.cookies.get("csrftoken")
    r = await client.post("/api/library", data={"_csrf_token": token},
                          files={"file": ("x.png", image_bytes(), "image/png")})
    assert r.status_code == 201
    r = await client.post("/api/templates/video/cancel", params={"jobId": job_id},
                          headers={"x-csrftoken": token})
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    r = await client.delete("/api/library", params={"key": key}, headers={"x-csrftoken": token})
    assert r.status_code == 200


async def test_a_token_without_its_cookie_is_refused(setup):
    client, alice, key, _ = setup
    token = client.cookies.get("csrftoken")
    async with sharing(client) as other:  # alice's session cookie but no csrftoken cookie
        other.cookies.set("reelforge_session", client.cookies.get("reelforge_session"),
                          domain="testserver.local")
        assert (await other.get("/api/me")).status_code == 200
        r = await other.delete("/api/library", params={"key": key},
                               headers={"x-csrftoken": token})
        assert r.status_code == 403
    assert len((await alice.get("/api/library")).json()) == 1


async def test_the_fal_webhook_is_reachable_without_a_token(client):
    """The one exception: no token needed (it is signed instead; with the local provider
    the route answers 404 rather than 403)."""
    r = await client.post("/api/webhooks/fal", content=b"{}")
    assert r.status_code != 403
    assert r.status_code < 500


async def test_the_event_stream_never_answers_500_for_a_form_body(client):
    """Regression: form-encoded requests to the @asgi stream crashed in the CSRF middleware."""
    for method in ("GET", "POST", "DELETE"):
        r = await client.request(method, "/events", content=b"a=1",
                                 headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 401, (method, r.status_code)
