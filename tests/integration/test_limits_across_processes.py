"""The sign-up limit and the storage quota live in the database, so two `serve` processes
against one SurrealDB server (the stand-in, or SURREALDB_TEST_URL) hold them together."""

from __future__ import annotations

import asyncio
import contextlib

from tests.helpers import Account, png_bytes
from tests.integration.test_multiprocess import client, cluster, share_cookies  # noqa: F401

IMAGE = png_bytes((64, 48))
QUOTA = 3 * len(IMAGE) + len(IMAGE) // 2  # three images, not four


async def test_signups_and_storage_are_limited_across_processes(cluster):  # noqa: F811
    servers = cluster.start(2, SIGNUPS_PER_HOUR="3", STORAGE_QUOTA=str(QUOTA))
    async with contextlib.AsyncExitStack() as stack:
        a, b = [await stack.enter_async_context(client(s.url)) for s in servers]
        person = await Account.signup(a, "uploader@example.com")  # the first of three
        share_cookies(a, b)  # the same browser session, on the other process
        csrf = {"x-csrftoken": a.cookies["csrftoken"]}
        uploads = await asyncio.gather(*[
            (a, b)[i % 2].post("/api/library", headers=csrf,
                               files={"file": (f"{i}.png", IMAGE, "image/png")})
            for i in range(8)])
        assert sorted(r.status_code for r in uploads) == [201] * 3 + [413] * 5
        assert {r.json()["error"] for r in uploads if r.status_code == 413} == {
            "storage_quota_exceeded"}

        token = a.cookies["csrftoken"]
        signups = await asyncio.gather(*[
            (a, b)[i % 2].post("/signup", follow_redirects=False, cookies={"csrftoken": token},
                               data={"email": f"farm{i}@example.com",
                                     "password": "correct-horse-1", "_csrf_token": token})
            for i in range(10)])
        assert sorted(r.status_code for r in signups) == [303] * 2 + [429] * 8
    db = await cluster.db()
    try:
        rows = await db.read("""
            LET $u = (SELECT VALUE id FROM ONLY user WHERE email = $email LIMIT 1);
            RETURN {
                files: math::sum(SELECT VALUE size FROM library WHERE owner = $u),
                counted: (SELECT VALUE bytes FROM ONLY type::thing("storage_use", record::id($u))),
                people: count(SELECT id FROM user),
            };""", {"email": person.email})
    finally:
        await db.close()
    assert rows[-1] == {"files": 3 * len(IMAGE), "counted": 3 * len(IMAGE), "people": 3}
