"""Accounts over HTTP: sign-up, sign-in (one message for every wrong credential, slowed and
then refused after repeated failures), sign-out, the session cookie's flags, redirects
after sign-in that never leave the site, and the Host allow-list."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from litestar.testing import transport as test_transport

from app.db.connection import rid
from app.settings import Settings
from app.web.auth import LoginThrottle
from app.web.pages import LOGIN_FAILED
from tests.helpers import Account
from tests.integration.api_support import (
    BASE_URL,
    count,
    in_app,
    running_app,
    sharing,
    user_row,
)

PASSWORD = "correct-horse-1"


async def _csrf(client) -> str:
    if not client.cookies.get("csrftoken"):
        await client.get("/login")
    return client.cookies.get("csrftoken")


async def post_form(client, url: str, **fields):
    token = await _csrf(client)
    return await client.post(url, data={**fields, "_csrf_token": token}, follow_redirects=False)


async def login(client, email: str, password: str, **extra):
    return await post_form(client, "/login", email=email, password=password, **extra)


async def login_from(client, address: str, email: str, password: str):
    """Sign in as if from client address `address` (see the client_address fixture)."""
    return await client.post(
        "/login", data={"email": email, "password": password, "_csrf_token": await _csrf(client)},
        headers={"x-test-client": address}, follow_redirects=False)


class RecordingThrottle(LoginThrottle):
    """The app's throttle, recording the delay it hands out for each attempt."""

    def __init__(self, db, **kw):
        super().__init__(db, **kw)
        self.delays: list[float | None] = []

    async def attempt(self, *keys: str) -> float | None:
        wait = await super().attempt(*keys)
        self.delays.append(wait)
        return wait


@pytest.fixture
def fast_throttle(client) -> RecordingThrottle:
    """The app's throttle with small numbers: free for 2 failures, refused from 4 on
    (delays 0.25 s then 0.5 s), so the whole ladder runs in about a second."""
    throttle = RecordingThrottle(client.app.state.services.db, free=2, limit=4)
    client.app.state.login_throttle = throttle
    return throttle


@pytest.fixture
def client_address(monkeypatch):
    """Let a request choose its client address through an `x-test-client` header (the
    test transport otherwise reports every request as coming from one address)."""
    original = test_transport.TestClientTransport.parse_request

    def parse_request(self, request):
        scope = original(self, request)
        address = request.headers.get("x-test-client")
        if address:
            scope["client"] = (address, 50000)
        return scope

    monkeypatch.setattr(test_transport.TestClientTransport, "parse_request", parse_request)


# -- sign-up ---------------------------------------------------------------------------------

async def test_signup_grants_signup_credits_with_a_ledger_entry(client, settings):
    r = await post_form(client, "/signup", email="New.Person@Example.com", password=PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/"
    me = (await client.get("/api/me")).json()
    assert me == {"email": "new.person@example.com", "credits": settings.signup_credits,
                  "available": settings.signup_credits}
    user = user_row(client, "new.person@example.com")
    assert user.balance == settings.signup_credits == 1000
    assert user.password_hash.startswith("$argon2") and PASSWORD not in user.password_hash
    ledger = client.blocking_portal.call(
        client.app.state.services.db.read_one,
        "SELECT amount, reason FROM ledger WHERE owner = $u", {"u": rid("user", user.id)})
    assert ledger == [{"amount": 1000, "reason": "signup"}]


async def test_signup_credits_come_from_settings(tmp_path):
    async with running_app(Settings(data_dir=tmp_path, database_url="mem://",
                                    signup_credits=37)) as c:
        r = await post_form(c, "/signup", email="few@example.com", password=PASSWORD)
        assert r.status_code == 303
        assert (await c.get("/api/me")).json()["credits"] == 37


async def test_duplicate_email_is_refused_with_a_message(client, alice):
    async with sharing(client) as other:
        r = await post_form(other, "/signup", email="ALICE@example.com", password="another-pass-9")
        assert r.status_code == 400
        assert "An account with this email already exists" in r.text
        assert (await other.get("/api/me")).status_code == 401
    assert count(client, "user") == 1 and count(client, "ledger") == 1
    # alice's password still works: the failed sign-up changed nothing
    async with sharing(client) as other:
        assert (await login(other, "alice@example.com", PASSWORD)).status_code == 303


@pytest.mark.parametrize(("email", "password", "field", "message"), [
    ("not-an-email", PASSWORD, "email", "Enter a valid email address."),
    ("two words@example.com", PASSWORD, "email", "Enter a valid email address."),
    ("x" * 250 + "@example.com", PASSWORD, "email", "Enter a valid email address."),
    ("short@example.com", "seven77", "password", "Use 8 to 256 characters."),
    ("long@example.com", "p" * 257, "password", "Use 8 to 256 characters."),
    ("", "", "email", "Enter a valid email address."),
])
async def test_bad_signup_is_400_with_the_field_message_and_creates_nothing(
        client, email, password, field, message):
    r = await post_form(client, "/signup", email=email, password=password)
    assert r.status_code == 400
    assert f'<p class="field-error" id="err-{field}">{message}</p>' in r.text
    assert 'aria-invalid="true"' in r.text
    assert count(client, "user") == 0 and count(client, "ledger") == 0
    assert "reelforge_session" not in r.headers.get("set-cookie", "")
    assert (await client.get("/api/me")).status_code == 401


async def test_signup_form_without_fields_is_400_not_500(client):
    r = await post_form(client, "/signup")
    assert r.status_code == 400 and count(client, "user") == 0


# -- sign-in ---------------------------------------------------------------------------------

async def test_login_and_logout(client, alice):
    async with sharing(client) as other:
        r = await login(other, "Alice@Example.com ", PASSWORD)
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert (await other.get("/api/me")).json()["email"] == "alice@example.com"
        token = other.cookies.get("csrftoken")
        r = await other.post("/logout", headers={"x-csrftoken": token}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert (await other.get("/api/me")).status_code == 401
        page = await other.get("/", follow_redirects=False)
        assert page.status_code in (302, 303, 307) and page.headers["location"] == "/login"


async def test_wrong_password_and_unknown_email_get_the_same_answer(client, alice):
    async with sharing(client) as other:
        wrong = await login(other, "alice@example.com", "wrong-password")
        unknown = await login(other, "nobody@example.com", PASSWORD)
        empty = await login(other, "", "")
        for r in (wrong, unknown, empty):
            assert r.status_code == 400
            assert LOGIN_FAILED.replace("'", "&#39;") in r.text
            assert "reelforge_session" not in r.headers.get("set-cookie", "")
        assert (await other.get("/api/me")).status_code == 401
        # the same page apart from the email echoed back into the form
        assert (wrong.text.replace("alice@example.com", "E")
                == unknown.text.replace("nobody@example.com", "E"))


async def test_repeated_failures_are_slowed_then_refused_per_account(
        client, alice, fast_throttle, client_address):
    async with sharing(client) as other:
        times = []
        for attempt in range(4):  # each from a new address: only the account is counted
            start = time.monotonic()
            r = await login_from(other, f"10.0.0.{attempt}", "alice@example.com", "wrong-pass")
            times.append(time.monotonic() - start)
            assert r.status_code == 400, attempt
        assert fast_throttle.delays == [0.0, 0.0, 0.25, 0.5]
        assert times[2] >= 0.25 and times[3] >= 0.5  # the answers really were slowed
        # past the limit: refused, even with the right password and from a fresh address
        r = await login_from(other, "10.9.9.9", "alice@example.com", PASSWORD)
        assert r.status_code == 429 and "Too many attempts" in r.text
        assert fast_throttle.delays[-1] is None
        assert (await other.get("/api/me")).status_code == 401
        # another account from another address is not affected
        bob = await Account.signup(other, "bob@example.com")
        await other.post("/logout", headers=bob.csrf)
        r = await login_from(other, "10.8.8.8", "bob@example.com", PASSWORD)
        assert r.status_code == 303


async def test_repeated_failures_are_refused_per_client_address(
        client, alice, fast_throttle, client_address):
    async with sharing(client) as other:
        for n in range(4):  # a different (unknown) account each time, one address
            r = await login_from(other, "203.0.113.7", f"guess{n}@example.com", "wrong-pass")
            assert r.status_code == 400
        r = await login_from(other, "203.0.113.7", "alice@example.com", PASSWORD)
        assert r.status_code == 429
        # the same account from another address still signs in
        r = await login_from(other, "198.51.100.1", "alice@example.com", PASSWORD)
        assert r.status_code == 303


async def test_default_throttle_ladder(services):
    t = LoginThrottle(services.db)
    keys = ("email:a@example.com", "ip:1.2.3.4")
    assert [await t.attempt(*keys) for _ in range(4)] == [0.0, 0.0, 0.0, 0.25]
    assert await t.attempt(*keys) == 0.5
    for _ in range(14):
        await t.attempt(*keys)
    assert await t.attempt(*keys) == 5.0  # capped; that was the 20th
    assert await t.attempt(*keys) is None  # refused, and not counted
    await t.succeeded(keys[0])
    assert await t.attempt(keys[0]) == 0.0
    assert await t.attempt(keys[1]) is None


# -- cookies ---------------------------------------------------------------------------------

def _cookie(response, name: str) -> str:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header
    raise AssertionError(f"no {name} cookie in {response.headers.get_list('set-cookie')}")


async def test_session_cookie_flags_over_http(client, alice):
    async with sharing(client) as other:
        r = await login(other, "alice@example.com", PASSWORD)
        cookie = _cookie(r, "reelforge_session").lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        assert "secure" not in cookie.replace("samesite", "")


async def test_cookies_are_secure_when_public_base_url_is_https(tmp_path):
    settings = Settings(data_dir=tmp_path, database_url="mem://", public_base_url="https://x")
    async with running_app(settings, base_url="https://testserver.local") as c:
        page = await c.get("/signup")
        csrf = _cookie(page, "csrftoken").lower()
        assert "; secure" in csrf and "samesite=lax" in csrf
        r = await c.post("/signup", data={"email": "s@example.com", "password": PASSWORD,
                                          "_csrf_token": c.cookies.get("csrftoken")},
                         follow_redirects=False)
        assert r.status_code == 303
        cookie = _cookie(r, "reelforge_session").lower()
        assert "; secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie


# -- redirects -------------------------------------------------------------------------------

OFF_SITE = ["//evil.com", "https://evil.com", "/\\evil.com", "\\\\evil.com", "http:evil.com",
            "javascript:alert(1)", "//evil.com/path", "evil.com", " //evil.com", "/\t/evil.com",
            "///evil.com"]


async def test_login_never_redirects_off_site(client, alice):
    async with sharing(client) as other:
        for target in OFF_SITE:  # one app for all (each sign-in costs an argon2 check)
            other.cookies.delete("reelforge_session")
            r = await login(other, "alice@example.com", PASSWORD, next=target)
            assert r.status_code == 303, target
            assert r.headers["location"] == "/", target


async def test_login_keeps_a_local_next(client, alice):
    async with sharing(client) as other:
        r = await login(other, "alice@example.com", PASSWORD, next="/jobs?status=active")
        assert r.status_code == 303 and r.headers["location"] == "/jobs?status=active"
        # a local path with a line break can't add a header or reach another site
        r = await login(other, "alice@example.com", PASSWORD, next="/x\r\nSet-Cookie: a=b")
        assert r.status_code == 303 and r.headers["location"].startswith("/x")
        assert "\n" not in r.headers["location"] and "a=b;" not in r.headers.get("set-cookie", "")


async def test_login_page_does_not_carry_an_off_site_next(client):
    r = await client.get("/login", params={"next": "//evil.com"})
    assert r.status_code == 200
    assert 'name="next" value="/"' in r.text and "evil.com" not in r.text


# -- the API and hosts -------------------------------------------------------------------------

async def test_api_me_is_401_when_signed_out(client):
    r = await client.get("/api/me")
    assert r.status_code == 401 and r.json()["error"] == "not_signed_in"


async def test_a_forged_session_cookie_is_not_signed_in(client, alice):
    async with sharing(client) as other:
        other.cookies.set("reelforge_session", "AAAA" * 20, domain="testserver.local")
        assert (await other.get("/api/me")).status_code == 401


async def test_host_header_not_in_allow_list_is_400(client, alice):
    for host in ["evil.com", "testserver.local.evil.com", "127.0.0.2", "evil.com:80", "",
                 "localhost.evil.com"]:
        r = await client.get("/api/me", headers={"host": host})
        assert r.status_code == 400 and r.json()["error"] == "invalid_host", host
        r = await client.get("/login", headers={"host": host})
        assert r.status_code == 400, host


async def test_allowed_host_with_a_port_is_served(client, alice):
    r = await client.get("/api/me", headers={"host": "localhost:8000"})
    assert r.status_code == 200 and r.json()["email"] == "alice@example.com"


async def _signup_burst(app, csrf: str, email: str, n: int) -> list[httpx.Response]:
    """n sign-ups at once on the app's own event loop."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL,
                                 cookies={"csrftoken": csrf}) as c:
        return await asyncio.gather(*[
            c.post("/signup", data={"email": email, "password": f"password-{i}",
                                    "_csrf_token": csrf}) for i in range(n)])


async def test_concurrent_signups_with_one_email_make_one_account(client):
    csrf = await _csrf(client)
    responses = in_app(client, _signup_burst, client.app, csrf, "race@example.com", 5)
    codes = sorted(r.status_code for r in responses)
    assert codes == [303] + [400] * 4, codes
    for r in responses:
        if r.status_code == 400:
            assert "An account with this email already exists" in r.text
    assert count(client, "user") == 1 and count(client, "ledger") == 1
    assert user_row(client, "race@example.com").balance == 1000
