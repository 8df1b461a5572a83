"""Free-credit farming: sign-ups are limited per client address (counted in the database
before the account is made), every spelling of one address is one account (sign-up,
sign-in and the command line), and SIGNUP_CREDITS=0 makes accounts with nothing to spend."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import pytest
from litestar.testing import transport as test_transport

from app.settings import Settings
from app.web.pages import SIGNUP_REFUSED
from tests.integration.api_support import BASE_URL, count, in_app, running_app, sharing

PASSWORD = "correct-horse-1"


@pytest.fixture
def client_address(monkeypatch):
    """A request chooses its socket address with an `x-test-client` header (the test
    transport otherwise reports every request as coming from one address)."""
    original = test_transport.TestClientTransport.parse_request

    def parse_request(self, request):
        scope = original(self, request)
        if address := request.headers.get("x-test-client"):
            scope["client"] = (address, 50000)
        return scope

    monkeypatch.setattr(test_transport.TestClientTransport, "parse_request", parse_request)


async def signup(client, email: str, address: str | None = None,
                 forwarded_for: str | None = None):
    """One sign-up in a browser of its own (no session carried over), from `address`."""
    async with sharing(client) as browser:
        await browser.get("/signup")
        headers = {"x-test-client": address} if address else {}
        if forwarded_for:
            headers["x-forwarded-for"] = forwarded_for
        return await browser.post("/signup", headers=headers, follow_redirects=False, data={
            "email": email, "password": PASSWORD,
            "_csrf_token": browser.cookies.get("csrftoken")})


def limited(tmp_path, n: int, **kw) -> Settings:
    return Settings(data_dir=tmp_path, database_url="mem://", signups_per_hour=n, **kw)


def test_the_default_is_five_an_hour(monkeypatch):
    monkeypatch.delenv("SIGNUPS_PER_HOUR")  # the test suite raises it for itself
    assert Settings().signups_per_hour == 5


async def test_signups_are_limited_per_client_address(tmp_path, client_address):
    async with running_app(limited(tmp_path, 3)) as c:
        for i in range(3):
            r = await signup(c, f"farm{i}@example.com", "203.0.113.5")
            assert r.status_code == 303, r.text
        r = await signup(c, "farm3@example.com", "203.0.113.5")
        assert r.status_code == 429
        assert SIGNUP_REFUSED in r.text  # on the sign-up page
        assert 'role="alert"' in r.text and 'value="farm3@example.com"' in r.text
        assert count(c, "user") == 3 and count(c, "ledger") == 3
        # another address is not held back by the first one
        assert (await signup(c, "someone@example.com", "198.51.100.7")).status_code == 303
        # a form with mistakes is not counted against its address
        for _ in range(3):
            r = await signup(c, "not-an-email", "198.51.100.7")
            assert r.status_code == 400
        assert (await signup(c, "second@example.com", "198.51.100.7")).status_code == 303


async def _burst(app, csrf: str, n: int) -> list[httpx.Response]:
    """n sign-ups with n addresses at once, on the app's own event loop."""
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL,
                                 cookies={"csrftoken": csrf}) as c:
        return await asyncio.gather(*[
            c.post("/signup", data={"email": f"burst{i}@example.com", "password": PASSWORD,
                                    "_csrf_token": csrf}) for i in range(n)])


async def test_a_concurrent_burst_from_one_address_makes_only_the_limit(tmp_path):
    async with running_app(limited(tmp_path, 3)) as c:
        await c.get("/signup")
        answers = in_app(c, _burst, c.app, c.cookies["csrftoken"], 12)
        codes = sorted(r.status_code for r in answers)
        assert codes == [303] * 3 + [429] * 9, codes
        assert count(c, "user") == 3


async def test_ipv6_signups_are_counted_per_64(tmp_path, client_address):
    async with running_app(limited(tmp_path, 2)) as c:
        assert (await signup(c, "v1@example.com", "2001:db8::1")).status_code == 303
        assert (await signup(c, "v2@example.com", "2001:db8::ffff:2")).status_code == 303
        assert (await signup(c, "v3@example.com", "2001:db8::3")).status_code == 429
        assert (await signup(c, "v4@example.com", "2001:db8:0:1::1")).status_code == 303


async def test_behind_a_trusted_proxy_each_client_has_its_own_count(tmp_path, client_address):
    async with running_app(limited(tmp_path, 1, trusted_proxies="10.0.0.1")) as c:
        proxy = "10.0.0.1"
        assert (await signup(c, "p1@example.com", proxy, "203.0.113.1")).status_code == 303
        assert (await signup(c, "p2@example.com", proxy, "203.0.113.2")).status_code == 303
        assert (await signup(c, "p3@example.com", proxy, "203.0.113.1")).status_code == 429
        # from anyone but the proxy, the header is not believed: one count per socket
        other = "198.51.100.1"
        assert (await signup(c, "p4@example.com", other, "203.0.113.3")).status_code == 303
        assert (await signup(c, "p5@example.com", other, "203.0.113.4")).status_code == 429


SPELLINGS = ["alice@example.com\u200b", "ALICE@Example.com.", "\uff41lice@example.com",
             " al\u00adice@example.com"]


async def test_spellings_of_one_address_are_one_account(client, alice):
    for typed in SPELLINGS:
        r = await signup(client, typed)
        assert r.status_code == 400, typed
        assert "An account with this email already exists" in r.text, typed
    r = await signup(client, "\u0430lice@example.com")  # Cyrillic а
    assert r.status_code == 400 and "mixes Cyrillic and Latin letters" in r.text
    assert count(client, "user") == 1
    for typed in SPELLINGS:  # and each of them signs in to it
        async with sharing(client) as browser:
            await browser.get("/login")
            r = await browser.post("/login", follow_redirects=False, data={
                "email": typed, "password": PASSWORD,
                "_csrf_token": browser.cookies.get("csrftoken")})
            assert r.status_code == 303, typed
            assert (await browser.get("/api/me")).json()["email"] == "alice@example.com"


async def test_signup_credits_zero_makes_an_account_with_nothing(tmp_path):
    async with running_app(Settings(data_dir=tmp_path, database_url="mem://",
                                    signup_credits=0)) as c:
        page = (await c.get("/signup")).text
        assert "free credits" not in page
        r = await signup(c, "zero@example.com")
        assert r.status_code == 303
        async with sharing(c) as browser:
            await browser.get("/login")
            await browser.post("/login", data={"email": "zero@example.com", "password": PASSWORD,
                                               "_csrf_token": browser.cookies["csrftoken"]})
            assert (await browser.get("/api/me")).json() == {
                "email": "zero@example.com", "credits": 0, "available": 0}
            account = await browser.get("/account")
            assert account.status_code == 200 and "No credit changes yet." in account.text
        assert count(c, "ledger") == 0  # no zero entry: the ledger still sums to the balance


def test_signup_credits_cannot_be_negative():
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        Settings(signup_credits=-5)


def _cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL")  # the embedded surrealkv store in DATA_DIR: it outlives a command
    return subprocess.run([sys.executable, "-m", "app", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_command_line_uses_the_same_normal_form(tmp_path):
    made = _cli(tmp_path, "users", "create", "--email", " Alice@Example.COM\u200b",
                "--password", PASSWORD, "--credits", "10")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "created alice@example.com with 10 credits"
    granted = _cli(tmp_path, "credits", "grant", "--email", "\uff41lice@example.com.",
                   "--amount", "5")
    assert granted.returncode == 0, granted.stderr
    assert granted.stdout.strip() == "alice@example.com now has 15 credits"
    again = _cli(tmp_path, "users", "create", "--email", "alice@example.com.",
                 "--password", PASSWORD)
    assert again.returncode != 0 and "already exists" in again.stderr
    look_alike = _cli(tmp_path, "users", "create", "--email", "\u0430lice@example.com",
                      "--password", PASSWORD)
    assert look_alike.returncode != 0 and "mixes Cyrillic and Latin" in look_alike.stderr
