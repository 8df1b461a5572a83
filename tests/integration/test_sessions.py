"""Sessions live in the database: logout ends them everywhere, the Account page lists them,
"sign out everywhere else" and a password change end the others, and signing in always
starts a fresh session id. The sign-in limit is counted before the password check."""

from __future__ import annotations

import asyncio

from litestar.testing import AsyncTestClient

from app.db import sessions as sessions_db
from app.db import throttle as throttle_db
from app.web.client_address import client_address, parse_networks
from tests.helpers import Account, on_app

PASSWORD = "correct-horse-1"


def second_browser(client) -> AsyncTestClient:
    other = AsyncTestClient(client.app, base_url=str(client.base_url))
    other.blocking_portal = client.blocking_portal
    return other


async def sign_in(c, email: str, password: str = PASSWORD, agent: str = "test-agent"):
    await c.get("/login")
    return await c.post("/login", data={"email": email, "password": password,
                                        "_csrf_token": c.cookies.get("csrftoken")},
                        headers={"user-agent": agent}, follow_redirects=False)


async def count_sessions(services) -> int:
    rows = await services.db.read_one("SELECT count() AS n FROM session GROUP ALL")
    return rows[0]["n"] if rows else 0


async def test_a_copied_cookie_is_worthless_after_logout(client, alice):
    copied = dict(client.cookies.items())
    assert (await client.get("/api/me", cookies=copied)).status_code == 200
    r = await alice.post("/logout", follow_redirects=False)
    assert r.status_code == 303
    thief = second_browser(client)
    r = await thief.get("/api/me", cookies=copied)
    assert r.status_code == 401


async def test_signing_in_always_starts_a_new_session_id(client, alice):
    before = client.cookies.get("reelforge_session")
    r = await sign_in(client, alice.email)
    assert r.status_code == 303
    after = client.cookies.get("reelforge_session")
    assert after and after != before  # no session fixation
    thief = second_browser(client)
    assert (await thief.get("/api/me", cookies={"reelforge_session": before})).status_code == 401


async def test_anonymous_visits_store_no_session(client, services):
    for path in ("/login", "/signup", "/static/app.css", "/health", "/api/templates"):
        await client.get(path)
    assert await count_sessions(services) == 0
    await Account.signup(client, "carol@example.com")
    assert await count_sessions(services) == 1
    for _ in range(3):  # requests that change nothing do not write the session again
        await client.get("/api/me")
    assert await count_sessions(services) == 1


async def test_account_lists_sessions_and_signs_out_everywhere_else(client, alice, services):
    phone = second_browser(client)
    assert (await sign_in(phone, alice.email, agent="Mozilla/5.0 (iPhone) Safari/604.1")
            ).status_code == 303
    page = await client.get("/account")
    assert page.status_code == 200
    assert "Safari on iPhone" in page.text and "This browser" in page.text
    assert "Sign out everywhere else" in page.text
    r = await client.post("/account/sessions/end-others",
                          data={"_csrf_token": client.cookies.get("csrftoken")},
                          headers=alice.csrf, follow_redirects=False)
    assert r.status_code == 303
    assert (await phone.get("/api/me")).status_code == 401
    assert (await client.get("/api/me")).status_code == 200  # this one goes on
    page = await client.get("/account?notice=ended")
    assert "Safari on iPhone" not in page.text and "Signed out of your other sessions" in page.text


async def test_ending_one_session_from_the_list(client, alice, services):
    phone = second_browser(client)
    await sign_in(phone, alice.email, agent="phone")
    user_id = str((await services.db.read_one(
        "SELECT VALUE id FROM user WHERE email = $e", {"e": alice.email}))[0].id)
    keys = [s.key for s in await sessions_db.list_for(services.db, user_id)]
    phone_key = sessions_db.key_of(phone.cookies.get("reelforge_session"))
    assert phone_key in keys and len(keys) == 2
    r = await client.post("/account/sessions/end",
                          data={"key": phone_key, "_csrf_token": client.cookies.get("csrftoken")},
                          headers=alice.csrf, follow_redirects=False)
    assert r.status_code == 303
    assert (await phone.get("/api/me")).status_code == 401
    # a key that is someone else's (or nobody's) ends nothing
    bob_client = second_browser(client)
    bob = await Account.signup(bob_client, "bob@example.com")
    bob_key = sessions_db.key_of(bob_client.cookies.get("reelforge_session"))
    await client.post("/account/sessions/end", data={
        "key": bob_key, "_csrf_token": client.cookies.get("csrftoken")}, headers=alice.csrf)
    assert (await bob.get("/api/me")).status_code == 200


async def test_a_password_change_signs_out_every_other_session(client, alice):
    phone = second_browser(client)
    await sign_in(phone, alice.email)
    bad = await client.post("/account/password", data={
        "current_password": "not-it", "new_password": "another-horse-2",
        "_csrf_token": client.cookies.get("csrftoken")}, headers=alice.csrf)
    assert bad.status_code == 400 and "current password is not right" in bad.text
    assert (await phone.get("/api/me")).status_code == 200  # nothing changed
    r = await client.post("/account/password", data={
        "current_password": PASSWORD, "new_password": "another-horse-2",
        "_csrf_token": client.cookies.get("csrftoken")}, headers=alice.csrf,
        follow_redirects=False)
    assert r.status_code == 303
    assert (await phone.get("/api/me")).status_code == 401
    assert (await client.get("/api/me")).status_code == 200
    fresh = second_browser(client)
    assert (await sign_in(fresh, alice.email)).status_code == 400
    assert (await sign_in(fresh, alice.email, "another-horse-2")).status_code == 303


async def test_concurrent_attempts_reserve_at_most_the_limit(client, services):
    """The counter is taken before the password check, in one transaction: of 60 attempts
    at once, exactly 20 may go on to a check (over HTTP and three processes:
    test_multiprocess.py)."""
    keys = ["email:burst@example.com", "ip:192.0.2.1"]
    answers = await asyncio.gather(*(
        throttle_db.reserve(services.db, keys, 20, 900) for _ in range(60)))
    allowed = [a for a in answers if a is not None]
    assert len(allowed) == 20 and sorted(allowed) == list(range(20))


def test_the_client_address_is_believed_only_from_trusted_proxies():
    proxies = parse_networks("10.0.0.1, 192.168.0.0/16")

    def scope(peer: str, **headers: str) -> dict:
        return {"client": (peer, 5000),
                "headers": [(k.replace("_", "-").encode(), v.encode())
                            for k, v in headers.items()]}

    # a stranger cannot choose its address
    assert client_address(scope("203.0.113.9", x_forwarded_for="1.2.3.4"), proxies) \
        == "203.0.113.9"
    # through a trusted proxy: the right-most address no trusted proxy added
    assert client_address(scope("10.0.0.1", x_forwarded_for="6.6.6.6, 198.51.100.7"),
                          proxies) == "198.51.100.7"
    assert client_address(scope("10.0.0.1", x_forwarded_for="198.51.100.7, 192.168.1.2"),
                          proxies) == "198.51.100.7"
    assert client_address(scope("10.0.0.1", forwarded='for="[2001:db8::1]:443";proto=https'),
                          proxies) == "2001:db8::1"
    assert client_address(scope("10.0.0.1"), proxies) == "10.0.0.1"  # no header
    assert client_address(scope("10.0.0.1", x_forwarded_for="1.2.3.4"), ()) == "10.0.0.1"


async def test_housekeeping_deletes_expired_sessions_and_old_counters(client, alice, services):
    from app.db import housekeeping

    async def run() -> tuple[int, int]:
        db = services.db
        await db.write("UPDATE session SET expires_at = time::now() - 1s")
        await db.write("UPSERT throttle:old SET n = 3, since = time::now() - 2d;"
                       "UPSERT throttle:fresh SET n = 1, since = time::now();")
        await housekeeping.purge_expired(db)
        sessions = await db.read_one("SELECT VALUE id FROM session")
        counters = await db.read_one("SELECT VALUE meta::id(id) FROM throttle")
        return len(sessions), sorted(counters)

    left, counters = on_app(client, run)
    assert left == 0
    assert "old" not in counters and "fresh" in counters
