"""The admin routes do not reveal themselves: for anyone but a signed-in admin, every admin
path with every method (the ones it serves, the ones it does not, made-up ones) answers
exactly what an unknown route answers for that method: status, content type and body, for
HTML and JSON clients. Routing answers a wrong method with 405 before any guard runs;
app/web/admin.py `hide_admin_routes` turns that into the 404."""

from __future__ import annotations

from app.db import users as users_db
from tests.helpers import Account
from tests.integration.api_support import in_app, sharing, user_id

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PURGE")


def admin_paths(job_id: str) -> list[str]:
    return ["/admin", "/admin/", f"/admin/jobs/{job_id}", "/admin/jobs/nope",
            *[f"/admin/jobs/{j}/{a}" for j in (job_id, "nope")
              for a in ("cancel", "retry", "release")]]


def seen(r) -> tuple[int, str | None, str, str | None]:
    return r.status_code, r.headers.get("content-type"), r.text, r.headers.get("allow")


async def test_every_admin_path_and_method_is_the_unknown_route(client, alice: Account):
    job_id = (await alice.submit(await alice.upload())).json()["jobId"]
    async with sharing(client) as stranger:
        await stranger.get("/login")  # has a CSRF cookie, is not signed in
        checked = 0
        for who in (stranger, alice.client):
            csrf = {"x-csrftoken": who.cookies.get("csrftoken")}
            for accept in ("text/html", "application/json"):
                for method in METHODS:
                    for token in ({}, csrf):  # refused before the CSRF check, token or not
                        headers = {"accept": accept, **token}
                        unknown = seen(await who.request(method, "/no-such-page",
                                                         headers=headers))
                        assert unknown[0] == 404
                        for path in admin_paths(job_id):
                            r = await who.request(method, path, headers=headers)
                            assert seen(r) == unknown, (method, path, accept, bool(token))
                            checked += 1
    assert checked == 2 * 2 * len(METHODS) * 2 * len(admin_paths(job_id))
    status = (await alice.get("/api/templates/video/status", params={"jobId": job_id})).json()
    assert status["status"] != "canceled"  # none of it did anything


async def test_an_admin_still_has_the_pages_and_a_wrong_method_is_a_plain_404(client,
                                                                               alice: Account):
    services = client.app.state.services
    in_app(client, users_db.set_admin, services.db, user_id(client, alice.email), True)
    html = {"accept": "text/html"}
    assert (await alice.get("/admin", headers=html)).status_code == 200
    unknown = seen(await alice.get("/no-such-page", headers=html))
    for method, path in [("GET", "/admin/jobs/x/cancel"), ("POST", "/admin"),
                         ("DELETE", "/admin/jobs/x")]:
        assert seen(await alice.client.request(method, path, headers={**html, **alice.csrf})
                    ) == unknown, (method, path)
    # elsewhere a wrong method is still a 405
    assert (await alice.client.put("/api/me", headers=alice.csrf)).status_code == 405
