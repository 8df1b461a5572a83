"""The whole path on the default parts: sign up, upload, generate with the local
renderer, see the video in the library, charged once."""

from __future__ import annotations

from app.db import users as users_db


async def test_generate_with_local_provider(alice, services):
    key = await alice.upload()
    r = await alice.submit(key)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "pending" and body["credits"] == 80
    assert (await alice.me())["available"] == 920

    final = await alice.wait_status(body["jobId"])
    assert final["status"] == "completed", final
    video = await alice.get(final["url"])
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"

    me = await alice.me()
    assert me == {"email": "alice@example.com", "credits": 920, "available": 920}
    items = (await alice.get("/api/library")).json()
    assert [i["kind"] for i in items].count("video") == 1
    user = await users_db.by_email(services.db, "alice@example.com")
    assert await users_db.ledger_sum(services.db, user.id) == user.balance == 920
    assert user.reserved == 0 and user.active_jobs == 0
