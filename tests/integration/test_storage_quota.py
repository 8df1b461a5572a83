"""The per-person storage quota (STORAGE_QUOTA): an upload that would take a library past
it gets 413 naming `file` with the numbers, also under concurrent uploads; a finished video
is filed whatever the quota (it was paid for) and counts from then on; the Account page
shows used of total with a bar."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.db import library as library_db
from app.db.connection import Database
from app.db.schema import apply_schema, forget_applied
from app.settings import Settings
from app.web.responses import human_bytes
from tests.helpers import Account
from tests.integration.api_support import (
    BASE_URL,
    count,
    image_bytes,
    in_app,
    media_files,
    running_app,
    user_id,
)

IMAGE = image_bytes("PNG", (64, 48))
SIZE = len(IMAGE)
QUOTA = 3 * SIZE + SIZE // 2  # room for three images, not four


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, database_url="mem://", storage_quota=QUOTA)


def used(client, email: str) -> int:
    return in_app(client, library_db.used_bytes, client.app.state.services.db,
                  user_id(client, email))


async def upload(account, content: bytes = IMAGE) -> httpx.Response:
    return await account.post("/api/library", files={"file": ("x.png", content, "image/png")})


def test_the_default_is_one_gib():
    assert Settings().storage_quota == 1024**3


async def test_an_upload_past_the_quota_is_413_naming_the_field_and_the_numbers(
        client, settings, alice):
    keys = [(await upload(alice)).json()["key"] for _ in range(3)]
    r = await upload(alice)
    assert r.status_code == 413
    body = r.json()
    assert body["error"] == "storage_quota_exceeded" and body["field"] == "file"
    assert (body["used"], body["quota"], body["size"]) == (3 * SIZE, QUOTA, SIZE)
    assert f"uses {human_bytes(3 * SIZE)} of {human_bytes(QUOTA)}" in body["message"]
    assert count(client, "library") == 3 and len(media_files(settings)) == 3
    # deleting makes room again: the usage is kept on every write to the library
    assert (await alice.delete("/api/library", params={"key": keys[0]})).status_code == 200
    assert used(client, alice.email) == 2 * SIZE
    assert (await upload(alice)).status_code == 201


async def test_the_quota_is_per_person(client, alice, bob):
    for _ in range(3):
        assert (await upload(alice)).status_code == 201
    assert (await upload(alice)).status_code == 413
    assert (await upload(bob)).status_code == 201


async def _burst(app, cookies: httpx.Cookies, n: int) -> list[httpx.Response]:
    """n uploads by one person at once, on the app's own event loop."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL,
                                 cookies=cookies) as c:
        headers = {"x-csrftoken": cookies["csrftoken"]}
        return await asyncio.gather(*[
            c.post("/api/library", headers=headers,
                   files={"file": (f"{i}.png", IMAGE, "image/png")}) for i in range(n)])


async def test_concurrent_uploads_cannot_go_past_the_quota(client, settings, alice):
    answers = in_app(client, _burst, client.app, alice.client.cookies, 10)
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] * 3 + [413] * 7, codes
    assert used(client, alice.email) == 3 * SIZE <= QUOTA
    assert count(client, "library") == 3
    assert len(media_files(settings)) == 3  # a refused upload's file is not kept


async def test_the_account_page_shows_used_of_total_with_a_bar(client, alice):
    await upload(alice)
    page = (await alice.get("/account")).text
    assert f"<strong>{human_bytes(SIZE)}</strong> of {human_bytes(QUOTA)} used" in page
    assert f'aria-valuenow="{SIZE * 100 // QUOTA}"' in page


async def test_a_finished_video_lands_past_the_quota_and_then_counts(tmp_path):
    tight = Settings(data_dir=tmp_path, database_url="mem://", storage_quota=SIZE + 10)
    async with running_app(tight) as c:
        person = await Account.signup(c, "filmmaker@example.com")
        key = (await upload(person)).json()["key"]
        job = (await person.submit(key)).json()["jobId"]
        done = await person.wait_status(job, timeout=120)
        assert done["status"] == "completed", done
        video = next(i for i in (await person.get("/api/library")).json()
                     if i["kind"] == "video")
        assert video["key"] == done["key"]
        after = used(c, person.email)
        assert after > SIZE + 10  # past the quota: the paid-for video was filed anyway
        assert (await person.me())["credits"] == 1000 - done["credits"]
        r = await upload(person)
        assert r.status_code == 413 and r.json()["used"] == after
        page = (await person.get("/account")).text
        assert 'aria-valuenow="100"' in page and "Your library is full" in page


async def test_usage_is_counted_from_the_libraries_already_there(tmp_path):
    """An existing database gets the usage records on its first schema apply."""
    db = Database(Settings(data_dir=tmp_path, database_url="mem://"))
    await db.connect()
    try:
        await apply_schema(db)
        await db.write("REMOVE EVENT storage_use ON TABLE library; DELETE storage_use;")
        await forget_applied(db)  # a database from before: another schema applied
        await db.write("""
            CREATE user:a CONTENT { email: "a@example.com", password_hash: "x" };
            CREATE library CONTENT { owner: user:a, key: "k1", kind: "image",
                                     content_type: "image/png", size: 100 };
            CREATE library CONTENT { owner: user:a, key: "k2", kind: "video",
                                     content_type: "video/mp4", size: 250 };""")
        assert await library_db.used_bytes(db, "a") == 0
        await apply_schema(db)
        assert await library_db.used_bytes(db, "a") == 350
        await apply_schema(db)  # idempotent: counted once
        assert await library_db.used_bytes(db, "a") == 350
    finally:
        await db.close()
