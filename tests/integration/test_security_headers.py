"""Security headers on every response (app/web/security_headers.py): pages, JSON, static
files, media, unknown routes; HSTS only behind an https PUBLIC_BASE_URL; the CSP names the
bucket's origin when media comes from S3; and the pages carry nothing the CSP would refuse
(Chromium's own verdict is in tests/e2e)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from app.db import users as users_db
from app.settings import Settings
from app.web.security_headers import content_security_policy
from app.web.sessions import COOKIE as SESSION_COOKIE
from tests.helpers import Account
from tests.integration.api_support import in_app, job_row, running_app, user_id

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "media-src 'self' blob: data:; connect-src 'self'; font-src 'self'; "
       "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
ALWAYS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
    "x-frame-options": "DENY",
}
HSTS = "max-age=31536000; includeSubDomains"


def directives(policy: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (d.split() for d in policy.split(";"))}


async def test_every_kind_of_response_carries_the_headers(client, alice: Account):
    key = await alice.upload()
    html = {"accept": "text/html"}
    responses = {
        "page": await alice.get("/", headers=html),
        "404 page": await alice.get("/no-such-page", headers=html),
        "json": await alice.get("/api/me"),
        "json 404": await alice.get("/api/templates/video/status", params={"jobId": "nope"}),
        "static": await alice.get("/static/app.js"),
        "vendored": await alice.get("/static/vendor/htmx.min.js"),
        "media": await alice.get((await alice.get("/api/library")).json()[0]["url"]),
        "health": await alice.get("/health"),
        "405": await alice.client.put("/api/me"),
    }
    await alice.post("/logout")
    responses["signed out page"] = await alice.get("/login", headers=html)
    responses["json 401"] = await alice.get("/api/me")
    responses["redirect"] = await alice.get("/", headers=html, follow_redirects=False)
    assert responses["media"].status_code == 200 and key
    for name, r in responses.items():
        for header, value in ALWAYS.items():
            assert r.headers.get(header) == value, (name, r.status_code, header)
        assert "strict-transport-security" not in r.headers, name  # http PUBLIC_BASE_URL


async def test_hsts_only_with_an_https_public_base_url(tmp_path):
    for base, hsts in [("https://reelforge.example.com", HSTS),
                       ("http://reelforge.example.com", None), (None, None)]:
        settings = Settings(data_dir=tmp_path / str(bool(hsts)) / str(bool(base)),
                            database_url="mem://", public_base_url=base)
        async with running_app(settings) as c:
            for path in ("/login", "/health", "/static/app.css", "/nope"):
                r = await c.get(path)
                assert r.headers.get("strict-transport-security") == hsts, (base, path)
                assert r.headers["content-security-policy"] == CSP


async def test_the_policy_names_the_origin_media_is_served_from(tmp_path, s3_server):
    """With STORAGE=s3 the library's URLs are the bucket's (presigned): their origin is
    allowed for images and videos, and nothing else is widened."""
    settings = Settings(data_dir=tmp_path, database_url="mem://", storage="s3",
                        s3_bucket=s3_server.bucket, s3_endpoint_url=s3_server.endpoint_url,
                        s3_region="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test")
    async with running_app(settings, idle=True) as c:
        alice = await Account.signup(c, "alice@example.com")
        await alice.upload()
        url = (await alice.get("/api/library")).json()[0]["url"]
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        assert origin != "http://testserver.local"  # served from the bucket, not the app
        policy = directives((await alice.get("/")).headers["content-security-policy"])
    assert origin in policy["img-src"] and origin in policy["media-src"]
    assert policy["script-src"] == ["'self'"] and policy["connect-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"] and policy["style-src"] == ["'self'"]

    def allowed(**kw) -> list[str]:
        return directives(content_security_policy(Settings(storage="s3", **kw)))["img-src"]

    public = allowed(s3_bucket="b", s3_public_base_url="https://media.example.com/videos/",
                     s3_endpoint_url="https://acc.r2.cloudflarestorage.com")
    assert public == ["'self'", "blob:", "data:", "https://media.example.com"]
    aws = allowed(s3_bucket="clips", s3_region="eu-west-1")
    assert aws[3:] == ["https://clips.s3.amazonaws.com", "https://clips.s3.eu-west-1.amazonaws.com"]
    local = directives(content_security_policy(Settings(storage="local",
                                                        s3_bucket="x")))["img-src"]
    assert local == ["'self'", "blob:", "data:"]


INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "inline <script>"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "on*= handler"),
    (re.compile(r"\sstyle\s*=", re.I), "style attribute"),
    (re.compile(r"<style", re.I), "<style> element"),
    (re.compile(r"\shx-on", re.I), "hx-on (needs eval)"),
    (re.compile(r"""hx-vals\s*=\s*['"]\s*js:""", re.I), "hx-vals js: (needs eval)"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


async def test_pages_and_fragments_hold_nothing_the_policy_refuses(tmp_path):
    """Every page, and the fragments the stream pushes (a running card with its progress
    bar, spinner and final toasts, a message toast), checked for what a CSP of script-src
    and style-src 'self' refuses."""
    settings = Settings(data_dir=tmp_path, database_url="mem://", signup_credits=100)
    async with running_app(settings, idle=True) as c:
        services = c.app.state.services
        pages = {path: await c.get(path, headers={"accept": "text/html"})
                 for path in ("/login", "/signup", "/no-such-page")}
        alice = await Account.signup(c, "alice@example.com")
        key = await alice.upload()
        job = (await alice.submit(key)).json()["jobId"]  # 80 of 100 credits: stays pending
        for path in ("/", "/templates", "/jobs", "/account"):
            pages[path] = await alice.get(path, headers={"accept": "text/html"})
        # a second job does not fit: the form comes back with a message toast (402)
        pages["generate 402"] = await alice.post(
            "/api/templates/video", headers={"accept": "text/html", "hx-request": "true"},
            data={"templateSlug": "car-commercial", "startKey": key,
                  "variables.BRAND": "Aurora", "variables.MODEL": "S1"})
        in_app(c, users_db.set_admin, services.db, user_id(c, alice.email), True)
        pages["/admin"] = await alice.get("/admin", headers={"accept": "text/html"})
        pages["/admin/jobs/{id}"] = await alice.get(f"/admin/jobs/{job}",
                                                    headers={"accept": "text/html"})
        fragments = {"running toast": services.fragments.progress_toast([job_row(c, job)], 1)}
        await alice.post(f"/api/templates/video/cancel?jobId={job}")
        fragments["final toast"] = services.fragments.toast(job_row(c, job))
    # the widgets that used to carry inline styles and handlers are all here
    assert '<div class="bar"></div>' in pages["/"].text
    assert 'class="toast-slow" data-slow-in="' in fragments["running toast"]
    assert 'class="toast-close"' in fragments["final toast"]
    assert pages["generate 402"].headers["x-refused-status"] == "402"  # a 200 (api.refused_form)
    assert 'class="toast-close"' in pages["generate 402"].text
    assert 'data-confirm="Cancel this job?' in pages["/admin/jobs/{id}"].text
    for name, r in pages.items():
        assert r.headers["content-type"].startswith("text/html"), name
    texts = {**{name: r.text for name, r in pages.items()}, **fragments}
    for name, text in texts.items():
        for pattern, what in INLINE:
            found = pattern.search(text)
            assert not found, f"{name}: {what}: {text[max(0, found.start() - 80):][:200]}"


async def test_the_icon_browsers_ask_for_leads_to_the_pages_icon(client):
    """A browser asks /favicon.ico on whatever names no icon (the JSON schema): it is sent
    to the SVG the pages name, without a session, and carries the headers too."""
    r = await client.get("/favicon.ico", follow_redirects=False)
    assert r.status_code == 301 and r.headers["location"] == "/static/favicon.svg"
    assert not [c for c in r.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)]
    assert r.headers["content-security-policy"] == CSP
    icon = await client.get(r.headers["location"])
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
