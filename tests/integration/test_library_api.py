"""The library over HTTP: uploads checked by decoding (not by name or declared type), keys
of the documented shape, newest-first listing, deletion, and nobody reaching another
person's files, whatever the key looks like."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from app.db import library as library_db
from tests.helpers import Account
from tests.integration.api_support import (
    count,
    image_bytes,
    in_app,
    media_files,
    png_bomb,
    sharing,
    user_id,
)


def key_pattern(uid: str, ext: str) -> re.Pattern:
    return re.compile(rf"users/{re.escape(uid)}/library/[0-9a-f]{{32}}\.{ext}")


async def upload(account: Account, content: bytes, name: str = "x.png",
                 content_type: str = "image/png"):
    return await account.post("/api/library", files={"file": (name, content, content_type)})


# -- accepted uploads ------------------------------------------------------------------------

ACCEPTED = [  # (format, file name, declared type) → (extension, stored content type)
    (("PNG", "photo.png", "image/png"), ("png", "image/png")),
    (("JPEG", "photo.jpeg", "image/jpeg"), ("jpg", "image/jpeg")),
    (("WEBP", "photo.webp", "image/webp"), ("webp", "image/webp")),
    # the extension comes from the decoded format, never from the name or declared type
    (("PNG", "x.jpg", "image/jpeg"), ("png", "image/png")),
    (("JPEG", "x.webp", "application/octet-stream"), ("jpg", "image/jpeg")),
    (("WEBP", "noext", "text/plain"), ("webp", "image/webp")),
]


async def test_upload_is_stored_under_a_key_named_for_its_decoded_format(
        client, settings, alice):
    uid = user_id(client, alice.email)
    for (fmt, name, declared), (ext, ctype) in ACCEPTED:
        content = image_bytes(fmt)
        r = await upload(alice, content, name, declared)
        assert r.status_code == 201, (name, r.text)
        body = r.json()
        assert key_pattern(uid, ext).fullmatch(body["key"]), (name, body["key"])
        assert body["kind"] == "image" and body["url"] == f"/media/{body['key']}"
        assert set(body) == {"key", "kind", "url"}
        assert (settings.media_dir / body["key"]).read_bytes() == content
        served = await alice.get(body["url"])
        assert served.status_code == 200 and served.content == content
        assert served.headers["content-type"].startswith(ctype), name
        assert served.headers["x-content-type-options"] == "nosniff"
        item = in_app(client, library_db.get_owned, client.app.state.services.db, uid,
                      body["key"])
        assert item.content_type == ctype and item.size == len(content), name


async def test_list_is_newest_first_and_delete_removes_file_and_item(client, settings, alice):
    keys = [(await upload(alice, image_bytes(color=(i * 40, 0, 0)))).json()["key"]
            for i in range(3)]
    items = (await alice.get("/api/library")).json()
    assert [i["key"] for i in items] == keys[::-1]
    assert all(i["kind"] == "image" and i["url"] == f"/media/{i['key']}" for i in items)
    stamps = [i["createdAt"] for i in items]
    assert stamps == sorted(stamps, reverse=True)

    r = await alice.delete("/api/library", params={"key": keys[1]})
    assert r.status_code == 200 and r.json() == {"deleted": keys[1]}
    assert [i["key"] for i in (await alice.get("/api/library")).json()] == [keys[2], keys[0]]
    assert not (settings.media_dir / keys[1]).exists()
    assert (settings.media_dir / keys[0]).exists()
    assert (await alice.get(f"/media/{keys[1]}")).status_code == 404
    # deleting again: it is gone
    r = await alice.delete("/api/library", params={"key": keys[1]})
    assert r.status_code == 404 and r.json()["field"] == "key"


# -- refused uploads --------------------------------------------------------------------------

def _truncated_png() -> bytes:
    data = image_bytes(size=(64, 64))
    return data[: len(data) // 2]


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buf, "GIF")
    return buf.getvalue()


SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
       b'<script>alert(1)</script></svg>')

REFUSED = {
    "text": (b"just some text, not an image\n", "notes.png", "image/png"),
    "svg": (SVG, "image.svg", "image/svg+xml"),
    "svg named png": (SVG, "image.png", "image/png"),
    "gif": (_gif(), "anim.gif", "image/gif"),
    "gif named png": (_gif(), "anim.png", "image/png"),
    "truncated png": (_truncated_png(), "cut.png", "image/png"),
    "empty": (b"", "empty.png", "image/png"),
    "html": (b"<html><script>alert(1)</script></html>", "page.png", "image/png"),
    "png header only": (b"\x89PNG\r\n\x1a\n", "head.png", "image/png"),
    "bmp": (image_bytes("BMP"), "x.png", "image/png"),
}


async def test_non_images_are_refused_and_nothing_is_stored(client, settings, alice):
    for case, (content, name, declared) in REFUSED.items():
        r = await upload(alice, content, name, declared)
        assert r.status_code == 400, (case, r.text)
        assert r.json()["error"] == "invalid_image" and r.json()["field"] == "file", case
    assert media_files(settings) == []
    assert count(client, "library") == 0
    assert (await alice.get("/api/library")).json() == []


async def test_the_pages_upload_is_refused_as_a_200_naming_the_status(client, settings, alice):
    """From the page (htmx) the same refusal is a 200 (a 4xx is a console error in the
    browser) with X-Refused-Status and HX-Reswap: none; the body is the same JSON."""
    content, name, declared = REFUSED["text"]
    plain = await upload(alice, content, name, declared)
    r = await alice.post("/api/library", headers={"hx-request": "true"},
                         files={"file": (name, content, declared)})
    assert r.status_code == 200, r.text
    assert r.headers["x-refused-status"] == "400" and r.headers["hx-reswap"] == "none"
    assert r.json() == plain.json() and r.json()["field"] == "file"
    assert media_files(settings) == [] and count(client, "library") == 0


async def test_a_tile_is_named_by_its_record_on_the_page_and_in_the_upload_answer(
        client, alice):
    """The tile's stable id (`tile-{record key}`) is the same whoever renders it: the page's
    upload answer (htmx) and the workspace."""
    r = await alice.post("/api/library", headers={"hx-request": "true"},
                         files={"file": ("a.png", image_bytes(), "image/png")})
    assert r.status_code == 201, r.text
    item = in_app(client, library_db.list_for, client.app.state.services.db,
                  user_id(client, alice.email))[0]
    tile = f'id="tile-{item.id}"'
    assert re.fullmatch(r"[0-9a-z]+", item.id) and tile in r.text
    assert tile in (await alice.get("/")).text


async def test_decompression_bombs_are_refused(client, settings, alice):
    for w, h in [(20_000, 20_000), (8_000, 8_000), (13_000, 8)]:
        bomb = png_bomb(w, h)
        assert len(bomb) < 100_000  # small file, huge picture
        r = await upload(alice, bomb, "bomb.png")
        assert r.status_code == 400, (w, h, r.text)
        assert "too large" in r.json()["message"]
    assert media_files(settings) == [] and count(client, "library") == 0


async def test_files_over_20_mb_are_refused(client, settings, alice):
    just_over = image_bytes() + b"\0" * (20 * 1024 * 1024)
    r = await upload(alice, just_over, "big.png")
    assert r.status_code in (400, 413), r.status_code
    far_over = b"\0" * (30 * 1024 * 1024)
    r = await upload(alice, far_over, "huge.png")
    assert r.status_code == 413
    assert media_files(settings) == [] and count(client, "library") == 0


async def test_malformed_upload_requests_are_4xx(client, settings, alice):
    cases = [
        {"files": {"other": ("x.png", image_bytes(), "image/png")}},  # no `file` field
        {"data": {"file": "not a file"}},  # a plain form field named file
        {"json": {"file": "x"}},  # not multipart at all
        {"content": b"", "headers": {"content-type": "multipart/form-data; boundary=x"}},
        {"content": b"--x\r\ngarbage", "headers": {
            "content-type": "multipart/form-data; boundary=x"}},
    ]
    for kw in cases:
        headers = {**alice.csrf, **kw.pop("headers", {})}
        r = await alice.client.post("/api/library", headers=headers, **kw)
        assert 400 <= r.status_code < 500, (kw, r.status_code, r.text)
    assert media_files(settings) == [] and count(client, "library") == 0


async def test_signed_out_people_can_neither_upload_nor_list(client, settings):
    await client.get("/login")
    r = await client.post("/api/library", headers={"x-csrftoken": client.cookies["csrftoken"]},
                          files={"file": ("x.png", image_bytes(), "image/png")})
    assert r.status_code == 401
    assert (await client.get("/api/library")).status_code == 401
    assert media_files(settings) == [] and count(client, "library") == 0


# -- other people's keys ---------------------------------------------------------------------

@pytest.fixture
async def bob(client) -> Account:
    """bob on the same app (conftest's bob fixture re-runs the lifespan)."""
    async with sharing(client) as other:
        yield await Account.signup(other, "bob@example.com")


async def test_nobody_reaches_another_persons_files(client, settings, alice, bob):
    key = (await upload(alice, image_bytes())).json()["key"]
    bob_key = (await upload(bob, image_bytes("JPEG"))).json()["key"]
    path = settings.media_dir / key

    assert [i["key"] for i in (await bob.get("/api/library")).json()] == [bob_key]
    r = await bob.get(f"/media/{key}")
    assert r.status_code == 404 and r.content != path.read_bytes()
    r = await bob.delete("/api/library", params={"key": key})
    assert r.status_code == 404
    assert path.is_file()
    assert [i["key"] for i in (await alice.get("/api/library")).json()] == [key]
    assert (await alice.get(f"/media/{key}")).status_code == 200
    # signed out: nothing at all
    async with sharing(client) as anon:
        assert (await anon.get(f"/media/{key}")).status_code == 401


async def test_traversal_keys_are_4xx_never_500(client, settings, alice, bob):
    key = (await upload(alice, image_bytes())).json()["key"]
    bob_key = (await upload(bob, image_bytes())).json()["key"]
    alice_id, bob_id = user_id(client, alice.email), user_id(client, bob.email)
    bob_file = bob_key.rsplit("/", 1)[-1]
    hostile = [
        "../" + bob_key, f"users/{alice_id}/../{bob_id}/library/{bob_file}",
        f"users/{alice_id}/library/../../{bob_id}/library/{bob_file}",
        "/" + bob_key, str(settings.media_dir / bob_key), "/etc/passwd", "../../etc/passwd",
        f"users/{alice_id}/library/", f"users/{alice_id}/library", "users", ".", "",
        key + "\0", key.replace("/", "\\"), "%2e%2e/" + bob_key, "a" * 5000,
        f"users/{alice_id}/library/./{key.rsplit('/', 1)[-1]}",
    ]
    for bad in hostile:
        r = await bob.delete("/api/library", params={"key": bad})
        assert 400 <= r.status_code < 500, (bad, r.status_code)
        r = await alice.delete("/api/library", params={"key": bad})
        assert 400 <= r.status_code < 500, (bad, r.status_code)
    for raw in ["..%2F..%2Fetc%2Fpasswd", f"users/{alice_id}/..%2F{bob_id}/library/{bob_file}",
                f"..%2F{bob_key}", "%2Fetc%2Fpasswd", f"{bob_key}%00", "%5C..%5Cx"]:
        r = await alice.get(f"/media/{raw}")
        assert 400 <= r.status_code < 500, (raw, r.status_code)
        assert r.content != (settings.media_dir / bob_key).read_bytes()
    r = await alice.delete("/api/library")  # no key at all
    assert r.status_code == 400
    assert (settings.media_dir / key).is_file() and (settings.media_dir / bob_key).is_file()
    assert count(client, "library") == 2
