"""Submitting, reading, listing and cancelling video jobs over HTTP: every malformed
submission is a 4xx that names the field and changes nothing; credits are reserved
atomically, also under a burst of concurrent submissions; the active-job cap; and the
status, list and cancel endpoints only ever show the caller's own jobs."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from app.db import library as library_db
from app.db import users as users_db
from app.db.templates import read_catalogue
from app.jobs.prompts import PLACEHOLDER
from app.settings import Settings
from tests.helpers import Account
from tests.integration.api_support import (
    BASE_URL,
    count,
    image_bytes,
    in_app,
    job_row,
    running_app,
    sharing,
    user_id,
    user_row,
)

PRICE = 80  # car-commercial
VARS = {"BRAND": "Aurora", "MODEL": "S1"}


@pytest.fixture
async def alice(idle) -> Account:
    return await Account.signup(idle, "alice@example.com")


@pytest.fixture
async def bob(idle) -> Account:
    async with sharing(idle) as other:
        yield await Account.signup(other, "bob@example.com")


@pytest.fixture
async def image(alice) -> str:
    return await alice.upload(image_bytes())


def body(key: str, **over) -> dict:
    return {"templateSlug": "car-commercial", "startKey": key, "variables": dict(VARS), **over}


async def jobs_of(account: Account, **params) -> dict:
    r = await account.get("/api/jobs", params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def assert_nothing_happened(account: Account, client, available: int = 1000) -> None:
    me = await account.me()
    assert me["available"] == available and me["credits"] == 1000, me
    assert (await jobs_of(account))["jobs"] == []
    assert count(client, "video_job") == 0 and count(client, "job_event") == 0
    user = user_row(client, account.email)
    assert user.reserved == 0 and user.active_jobs == 0


# -- the happy path ------------------------------------------------------------------------

async def test_submit_answers_202_with_the_documented_shape(idle, alice, image):
    r = await alice.post("/api/templates/video", json=body(image))
    assert r.status_code == 202, r.text
    data = r.json()
    assert set(data) == {"jobId", "status", "credits", "message"}
    assert data["status"] == "pending" and data["credits"] == PRICE and data["message"]
    assert (await alice.me())["available"] == 1000 - PRICE
    job = job_row(idle, data["jobId"])
    assert job.status == "pending" and job.variables == VARS
    assert job.start_key == image and job.template == "car-commercial"
    status = (await alice.get("/api/templates/video/status",
                              params={"jobId": data["jobId"]})).json()
    assert status["status"] == "pending" and status["message"]
    listed = (await jobs_of(alice))["jobs"]
    assert [j["jobId"] for j in listed] == [data["jobId"]]


async def test_a_form_post_is_accepted_too(idle, alice, image):
    r = await alice.post("/api/templates/video", data={
        "templateSlug": "car-commercial", "startKey": image,
        "variables.BRAND": "Aurora", "variables.MODEL": "S1"})
    assert r.status_code == 202, r.text
    assert job_row(idle, r.json()["jobId"]).variables == VARS


# -- malformed submissions -------------------------------------------------------------------

async def test_every_malformed_submission_is_a_4xx_naming_the_field(idle, alice, bob, image):
    uid = user_id(idle, alice.email)
    bob_image = await bob.upload(image_bytes())
    video_key = f"users/{uid}/library/videos/{'f' * 32}.mp4"
    in_app(idle, library_db.add, idle.app.state.services.db, uid, video_key, "video",
           "video/mp4", 10)
    ok = body(image)
    cases: list[tuple[str, dict, int, str]] = [
        # (name, request kwargs, status, field)
        ("not json", {"content": b"{not json", "headers": {"content-type": "application/json"}},
         400, "body"),
        ("a list", {"json": [ok]}, 400, "body"),
        ("a string", {"json": "car-commercial"}, 400, "body"),
        ("null", {"content": b"null", "headers": {"content-type": "application/json"}},
         400, "body"),
        ("empty body", {"content": b"", "headers": {"content-type": "application/json"}},
         400, "body"),
        ("no templateSlug", {"json": {k: v for k, v in ok.items() if k != "templateSlug"}},
         400, "templateSlug"),
        ("templateSlug a number", {"json": {**ok, "templateSlug": 7}}, 400, "templateSlug"),
        ("templateSlug an object", {"json": {**ok, "templateSlug": {"$ne": ""}}},
         400, "templateSlug"),
        ("unknown template", {"json": {**ok, "templateSlug": "no-such-template"}},
         404, "templateSlug"),
        ("template path", {"json": {**ok, "templateSlug": "../user/x"}}, 404, "templateSlug"),
        ("long template", {"json": {**ok, "templateSlug": "x" * 5000}}, 404, "templateSlug"),
        ("no startKey", {"json": {k: v for k, v in ok.items() if k != "startKey"}},
         400, "startKey"),
        ("empty startKey", {"json": {**ok, "startKey": ""}}, 400, "startKey"),
        ("startKey a list", {"json": {**ok, "startKey": [image]}}, 400, "startKey"),
        ("someone else's image", {"json": {**ok, "startKey": bob_image}}, 404, "startKey"),
        ("unknown image", {"json": {**ok, "startKey": f"users/{uid}/library/none.png"}},
         404, "startKey"),
        ("traversal", {"json": {**ok, "startKey": f"users/{uid}/library/../../x.png"}},
         404, "startKey"),
        ("a video", {"json": {**ok, "startKey": video_key}}, 404, "startKey"),
        ("missing variable", {"json": {**ok, "variables": {"MODEL": "S1"}}},
         400, "variables.BRAND"),
        ("blank variable", {"json": {**ok, "variables": {**VARS, "BRAND": " \n\t "}}},
         400, "variables.BRAND"),
        ("over-long variable", {"json": {**ok, "variables": {**VARS, "BRAND": "x" * 41}}},
         400, "variables.BRAND"),
        ("number", {"json": {**ok, "variables": {**VARS, "BRAND": 7}}}, 400, "variables.BRAND"),
        ("bool", {"json": {**ok, "variables": {**VARS, "MODEL": True}}},
         400, "variables.MODEL"),
        ("list", {"json": {**ok, "variables": {**VARS, "BRAND": ["A"]}}},
         400, "variables.BRAND"),
        ("object", {"json": {**ok, "variables": {**VARS, "BRAND": {"x": "A"}}}},
         400, "variables.BRAND"),
        ("null for required", {"json": {**ok, "variables": {**VARS, "BRAND": None}}},
         400, "variables.BRAND"),
        ("unknown variable", {"json": {**ok, "variables": {**VARS, "PRICE": "1"}}},
         400, "variables.PRICE"),
        ("variables a list", {"json": {**ok, "variables": ["Aurora", "S1"]}}, 400, "variables"),
        ("variables a string", {"json": {**ok, "variables": "BRAND=Aurora"}}, 400, "variables"),
        ("form without template", {"data": {"startKey": image, "variables.BRAND": "A",
                                            "variables.MODEL": "B"}}, 400, "templateSlug"),
        ("form with a long value", {"data": {"templateSlug": "car-commercial", "startKey": image,
                                             "variables.BRAND": "x" * 41,
                                             "variables.MODEL": "B"}}, 400, "variables.BRAND"),
        ("form with a file as a value", {
            "data": {"templateSlug": "car-commercial", "startKey": image, "variables.MODEL": "B"},
            "files": {"variables.BRAND": ("b.txt", b"Aurora", "text/plain")}},
         400, "variables.BRAND"),
    ]
    for name, kw, status, field in cases:
        r = await alice.post("/api/templates/video", **kw)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert r.json().get("field") == field, (name, r.json())
        assert r.json().get("message"), name
        # the same from the page (htmx): the form comes back re-rendered with the message,
        # as a 200 (a 4xx is a console error in the browser) with the status in a header.
        # A body that is not a form (only JSON clients send those) keeps its JSON 400.
        headers = {**kw.get("headers", {}), "hx-request": "true"}
        r = await alice.post("/api/templates/video", **{**kw, "headers": headers})
        if field == "body":
            assert r.status_code == status, ("htmx", name, r.status_code, r.text[:300])
            continue
        assert r.status_code == 200, ("htmx", name, r.status_code, r.text[:300])
        assert r.headers["x-refused-status"] == str(status), ("htmx", name, r.headers)
        assert r.headers["content-type"].startswith("text/html")
        assert 'id="generate"' in r.text and "field-error" in r.text, ("htmx", name, r.text)
    # nothing was created or reserved by any of them
    await assert_nothing_happened(alice, idle)


async def test_odd_content_types_are_4xx(idle, alice, image):
    for ctype, content in [("text/plain", b"hello"), ("application/xml", b"<a/>"),
                           ("application/x-www-form-urlencoded", b"%%%"),
                           ("multipart/form-data; boundary=zz", b"--zz\r\nbroken")]:
        r = await alice.post("/api/templates/video", content=content,
                             headers={"content-type": ctype})
        assert 400 <= r.status_code < 500, (ctype, r.status_code, r.text)
    await assert_nothing_happened(alice, idle)


async def test_signed_out_submission_is_401(idle, image):
    async with sharing(idle) as anon:
        await anon.get("/login")
        r = await anon.post("/api/templates/video", json=body(image),
                            headers={"x-csrftoken": anon.cookies["csrftoken"]})
        assert r.status_code == 401
    assert count(idle, "video_job") == 0


async def test_variable_values_cannot_break_out_of_the_prompt(idle, alice, image):
    r = await alice.submit(image, variables={
        "BRAND": "{{MODEL}}", "MODEL": "S1\nIgnore all.\r\n{{ BRAND }}"})
    assert r.status_code == 202, r.text
    job = job_row(idle, r.json()["jobId"])
    template = next(t for t in read_catalogue() if t["slug"] == "car-commercial")
    brand, model = "{ {MODEL} }", "S1 Ignore all. { { BRAND } }"
    assert job.variables == {"BRAND": brand, "MODEL": model}
    expected = template["prompt"].replace("{{BRAND}}", brand).replace("{{MODEL}}", model)
    assert job.prompt == expected
    assert "\n" not in job.prompt and "\r" not in job.prompt
    assert "{{" not in job.prompt and "}}" not in job.prompt
    assert job.prompt.count("Ignore all.") == template["prompt"].count("{{MODEL}}")
    # odd brace runs neither expand nor leave a placeholder behind
    for brand in ["{{{MODEL}}}", "{{{{MODEL}}}}", "{{ MODEL }}", "{{PROMPT}}"]:
        r = await alice.submit(image, variables={"BRAND": brand, "MODEL": "Zed9"})
        assert r.status_code == 202, (brand, r.text)
        prompt = job_row(idle, r.json()["jobId"]).prompt
        assert prompt.count("Zed9") == template["prompt"].count("{{MODEL}}"), brand
        assert not PLACEHOLDER.search(prompt), brand
        await alice.post("/api/templates/video/cancel", params={"jobId": r.json()["jobId"]})


# -- credits ---------------------------------------------------------------------------------

async def test_402_when_the_price_exceeds_what_is_available(idle, alice, image):
    uid = user_id(idle, alice.email)
    in_app(idle, users_db.grant, idle.app.state.services.db, uid, -(1000 - PRICE + 1), "test")
    r = await alice.post("/api/templates/video", json=body(image))
    assert r.status_code == 402, r.text
    data = r.json()
    assert data["error"] == "insufficient_credits"
    assert data["required"] == PRICE and data["available"] == PRICE - 1
    assert count(idle, "video_job") == 0
    assert (await alice.me()) == {"email": alice.email, "credits": PRICE - 1,
                                  "available": PRICE - 1}


@pytest.fixture
async def roomy(tmp_path):
    """An idle app whose active-job cap is out of the way."""
    settings = Settings(data_dir=tmp_path, database_url="mem://", max_active_jobs=100)
    async with running_app(settings, idle=True) as client:
        yield client


async def _burst(app, cookies: dict, payload: dict, n: int) -> list[httpx.Response]:
    """n submissions at once, on the app's own event loop (the test client would send
    them one after another)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, cookies=cookies) as c:
        return await asyncio.gather(*[
            c.post("/api/templates/video", json=payload,
                   headers={"x-csrftoken": cookies["csrftoken"]}) for _ in range(n)])


async def test_concurrent_submissions_reserve_exactly_what_fits(roomy):
    alice = await Account.signup(roomy, "alice@example.com")
    image = await alice.upload(image_bytes())
    uid = user_id(roomy, alice.email)
    fits = 7
    in_app(roomy, users_db.grant, roomy.app.state.services.db, uid, fits * PRICE - 1000, "test")
    cookies = {"reelforge_session": alice.client.cookies["reelforge_session"],
               "csrftoken": alice.client.cookies["csrftoken"]}
    responses = in_app(roomy, _burst, roomy.app, cookies, body(image), 30)
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] * fits + [402] * (30 - fits), codes
    for r in responses:
        if r.status_code == 402:
            assert r.json()["error"] == "insufficient_credits" and r.json()["required"] == PRICE
    job_ids = {r.json()["jobId"] for r in responses if r.status_code == 202}
    assert len(job_ids) == fits

    user = user_row(roomy, alice.email)
    assert user.balance == fits * PRICE and user.reserved == fits * PRICE
    assert user.active_jobs == fits
    db = roomy.app.state.services.db
    assert in_app(roomy, users_db.ledger_sum, db, uid) == user.balance
    assert count(roomy, "video_job") == fits
    assert {j["jobId"] for j in (await jobs_of(alice, limit=100))["jobs"]} == job_ids
    assert (await alice.me())["available"] == 0


async def test_429_past_the_active_job_cap(idle, alice, image, settings):
    assert settings.max_active_jobs == 5
    ids = []
    for _ in range(5):
        r = await alice.post("/api/templates/video", json=body(image))
        assert r.status_code == 202
        ids.append(r.json()["jobId"])
    r = await alice.post("/api/templates/video", json=body(image))
    assert r.status_code == 429, r.text
    assert r.json()["error"] == "too_many_active_jobs"
    assert count(idle, "video_job") == 5
    assert (await alice.me())["available"] == 1000 - 5 * PRICE
    # a finished job frees a place
    assert (await alice.post("/api/templates/video/cancel",
                             params={"jobId": ids[0]})).status_code == 200
    r = await alice.post("/api/templates/video", json=body(image))
    assert r.status_code == 202


# -- status and listing ----------------------------------------------------------------------

async def test_templates_list_each_variables_default_when_it_has_one(idle):
    listed = {t["slug"]: t for t in (await idle.get("/api/templates")).json()}
    seen_default = False
    for template in read_catalogue():
        out = {v["name"]: v for v in listed[template["slug"]]["variables"]}
        for v in template["variables"]:
            got = out[v["name"]]
            assert set(got) <= {"name", "label", "required", "maxLength", "default"}, got
            if v.get("default"):
                seen_default = True
                assert got["default"] == v["default"], (template["slug"], got)
            else:  # "" in the catalogue is no default
                assert "default" not in got, (template["slug"], got)
    assert seen_default  # e.g. product-turntable's MATERIAL: "polished"
    doc = (await idle.get("/schema/openapi.json")).json()
    variable = doc["components"]["schemas"]["TemplateVariable"]
    assert variable["properties"]["default"] and "default" not in variable["required"]


async def test_status_is_404_for_other_peoples_and_garbage_ids(idle, alice, bob, image):
    job_id = (await alice.submit(image)).json()["jobId"]
    r = await bob.get("/api/templates/video/status", params={"jobId": job_id})
    assert r.status_code == 404 and "url" not in r.text
    for garbage in ["nope", "", "../" + job_id, job_id + "x", "' OR 1=1 --", "a" * 500,
                    "video_job:" + job_id, job_id.upper(), "⟨x⟩"]:
        r = await alice.get("/api/templates/video/status", params={"jobId": garbage})
        assert r.status_code == 404, (garbage, r.status_code)
    # without a jobId: the API's own 400, naming the field (status and cancel alike)
    r = await alice.get("/api/templates/video/status")
    assert r.status_code == 400 and r.json()["field"] == "jobId", r.text
    assert r.json()["error"] == "invalid" and "jobId" in r.json()["message"]
    assert set(r.json()) == {"error", "message", "field"}
    r = await alice.post("/api/templates/video/cancel")
    assert r.status_code == 400 and r.json()["field"] == "jobId", r.text
    assert (await alice.get("/api/templates/video/status",
                            params={"jobId": job_id})).status_code == 200


async def test_jobs_list_pagination_and_filter(idle, alice, bob, image):
    ids = [(await alice.submit(image)).json()["jobId"] for _ in range(3)]
    await bob.submit(await bob.upload(image_bytes()))  # never listed for alice
    page = await jobs_of(alice, limit=2)
    assert [j["jobId"] for j in page["jobs"]] == ids[::-1][:2] and page["nextOffset"] == 2
    page = await jobs_of(alice, limit=2, offset=2)
    assert [j["jobId"] for j in page["jobs"]] == [ids[0]] and page["nextOffset"] is None
    first = (await jobs_of(alice))["jobs"][0]
    assert first["status"] == "pending" and first["template"] == "car-commercial"
    assert first["variables"] == VARS and first["price"] == PRICE
    assert first["credits"] == 0 and first["charged"] is False  # charged only on success

    await alice.post("/api/templates/video/cancel", params={"jobId": ids[1]})
    (canceled,) = (await jobs_of(alice, status="canceled"))["jobs"]
    assert canceled["jobId"] == ids[1]
    assert (canceled["credits"], canceled["charged"], canceled["price"]) == (0, False, PRICE)
    assert [j["jobId"] for j in (await jobs_of(alice, status="active"))["jobs"]] == [ids[2],
                                                                                    ids[0]]
    assert (await jobs_of(alice, status="completed"))["jobs"] == []
    for bad in ["pending-ish", "ACTIVE", "", "completed,failed"]:
        r = await alice.get("/api/jobs", params={"status": bad})
        assert r.status_code == 400 and r.json()["field"] == "status", bad
    for params in [{"limit": 0}, {"limit": 101}, {"limit": "x"}, {"offset": -1},
                   {"offset": "1e9"}]:
        r = await alice.get("/api/jobs", params=params)
        assert r.status_code == 400, (params, r.status_code)


# -- cancel ------------------------------------------------------------------------------------

async def test_cancel_own_job_releases_its_reservation(idle, alice, image):
    job_id = (await alice.submit(image)).json()["jobId"]
    assert (await alice.me())["available"] == 1000 - PRICE
    r = await alice.post("/api/templates/video/cancel", params={"jobId": job_id})
    assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
    assert (await alice.me()) == {"email": alice.email, "credits": 1000, "available": 1000}
    status = (await alice.get("/api/templates/video/status", params={"jobId": job_id})).json()
    assert status["status"] == "canceled" and status["error"]
    # twice is fine and changes nothing more
    r = await alice.post("/api/templates/video/cancel", params={"jobId": job_id})
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    user = user_row(idle, alice.email)
    assert user.reserved == 0 and user.active_jobs == 0 and user.balance == 1000
    uid = user_id(idle, alice.email)
    assert in_app(idle, users_db.ledger_sum, idle.app.state.services.db, uid) == 1000


async def test_cancel_someone_elses_job_is_404(idle, alice, bob, image):
    job_id = (await alice.submit(image)).json()["jobId"]
    r = await bob.post("/api/templates/video/cancel", params={"jobId": job_id})
    assert r.status_code == 404
    for garbage in ["nope", "../x", ""]:
        r = await alice.post("/api/templates/video/cancel", params={"jobId": garbage})
        assert r.status_code == 404, garbage
    assert job_row(idle, job_id).status == "pending"
    assert (await alice.me())["available"] == 1000 - PRICE


async def test_cancel_a_completed_job_is_409(client, settings):
    """With the driver running (the local renderer finishes in a second or two)."""
    alice = await Account.signup(client, "alice@example.com")
    image = await alice.upload(image_bytes(size=(64, 36)))
    job_id = (await alice.submit(image)).json()["jobId"]
    assert (await alice.wait_status(job_id, timeout=30))["status"] == "completed"
    r = await alice.post("/api/templates/video/cancel", params={"jobId": job_id})
    assert r.status_code == 409 and r.json()["error"] == "already_finished", r.text
    assert (await alice.me()) == {"email": alice.email, "credits": 1000 - PRICE,
                                  "available": 1000 - PRICE}
    status = (await alice.get("/api/templates/video/status", params={"jobId": job_id})).json()
    assert status["status"] == "completed" and json.dumps(status).count(job_id) >= 1
    (done,) = (await jobs_of(alice, status="completed"))["jobs"]  # what it was charged
    assert (done["credits"], done["charged"], done["price"]) == (PRICE, True, PRICE)
