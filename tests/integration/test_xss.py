"""What people type (template variables, emails, file names) is rendered escaped in every
page, every fragment a handler returns and every fragment the event stream pushes."""

from __future__ import annotations

import pytest
from markupsafe import escape

from app.db import library as library_db
from app.db import users as users_db
from app.jobs.states import FINAL, Status
from tests.helpers import Account
from tests.integration.api_support import image_bytes, in_app, job_row, user_id

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
PAYLOADS = [SCRIPT, IMG]
RAW_MARKERS = [*PAYLOADS, "<script>alert", "<img src=x", "onerror=alert(1)>"]


def assert_escaped(html: str, *expected: str, where: str = "") -> None:
    """No payload appears raw; each of `expected` appears in its escaped form."""
    for marker in RAW_MARKERS:
        assert marker not in html, f"raw {marker!r} in {where}"
    for payload in expected:
        assert str(escape(payload)) in html, f"escaped {payload!r} missing from {where}"


@pytest.fixture
async def world(idle):
    """alice with an image whose file name is a payload, a pending job, a failed job whose
    error is a payload, and a canceled job, all with payloads as variables."""
    alice = await Account.signup(idle, "alice@example.com")
    r = await alice.post("/api/library",
                         files={"file": (SCRIPT + ".png", image_bytes(), "image/png")})
    assert r.status_code == 201
    key = r.json()["key"]
    variables = {"BRAND": SCRIPT, "MODEL": IMG}
    ids = []
    for _ in range(3):
        r = await alice.submit(key, variables=variables)
        assert r.status_code == 202, r.text
        ids.append(r.json()["jobId"])
    services = idle.app.state.services
    failed = in_app(idle, lambda: services.jobs.move(
        ids[1], Status.FAILED, fields={"error": IMG + SCRIPT}, reason="test"))
    assert failed.status == "failed"
    r = await alice.post("/api/templates/video/cancel", params={"jobId": ids[2]})
    assert r.status_code == 200
    in_app(idle, users_db.grant, services.db, user_id(idle, alice.email), 5, SCRIPT)
    return alice, key, ids


async def test_pages_render_payloads_escaped(idle, world):
    alice, key, ids = world
    pages = {
        "/": [SCRIPT, IMG],  # library tile (file name), job cards, generate form
        f"/?image={key}": [SCRIPT, IMG],
        "/templates": [SCRIPT, IMG],
        "/templates?template=car-commercial": [SCRIPT, IMG],
        "/jobs": [SCRIPT, IMG],
        "/jobs?status=failed": [SCRIPT, IMG],  # the error message and the retry form
        "/jobs?status=canceled": [SCRIPT, IMG],
        "/account": [SCRIPT],  # a ledger entry whose reason is a payload
        "/fragments/generate?templateSlug=car-commercial": [SCRIPT],  # the image's name
        f"/fragments/panel?image={key}": [SCRIPT],
    }
    for url, expected in pages.items():
        r = await alice.get(url, headers={"accept": "text/html"})
        assert r.status_code == 200, (url, r.status_code)
        assert_escaped(r.text, *expected, where=url)
    # the retry form puts the variables into attribute values: quotes must be escaped there
    failed = (await alice.get("/jobs?status=failed")).text
    assert f'name="variables.MODEL" value="{escape(IMG)}"' in failed


async def test_fragments_and_stream_events_render_payloads_escaped(idle, world):
    alice, key, ids = world
    services = idle.app.state.services
    f = services.fragments
    for job_id in ids:
        job = job_row(idle, job_id)
        assert job.variables == {"BRAND": SCRIPT, "MODEL": IMG}
        assert_escaped(f.job_card(job), SCRIPT, IMG, where=f"job_card {job.status}")
        assert_escaped(f.job_card(job, "/media/x.mp4"), SCRIPT, where="job_card with video")
        if job.status in FINAL:
            assert_escaped(f.toast(job), where=f"toast {job.status}")
            assert_escaped(f.toast(job, announce=True), where="announced toast")
        else:
            assert_escaped(f.progress_toast([job], 1), where=f"notice {job.status}")
    jobs = [job_row(idle, i) for i in ids]
    assert_escaped(f.progress_toast(jobs, 1), where="notice of several jobs")
    assert_escaped(f.away_toast(jobs), where="summary of jobs ended while away")
    failed = job_row(idle, ids[1])
    assert_escaped(f.toast(failed), IMG + SCRIPT, where="failed toast")
    assert_escaped(f.message_toast("error", SCRIPT, "/account", IMG), SCRIPT, IMG,
                   where="message toast")
    uid = user_id(idle, alice.email)
    item = in_app(idle, library_db.list_for, services.db, uid)[0]
    assert item.name == SCRIPT + ".png"
    assert_escaped(f.library_tile(item, "/media/" + key), SCRIPT, where="library tile")
    # what the event stream sends first on connect (job cards, toasts, credits)
    events = in_app(idle, services.notifier.snapshot, uid)
    assert events
    html = "".join(e.data for e in events)
    assert_escaped(html, SCRIPT, IMG, where="stream snapshot")


async def test_htmx_answers_render_payloads_escaped(idle, world):
    alice, key, ids = world
    hx = {"hx-request": "true"}
    # a refused submission re-renders the form with what was typed
    r = await alice.post("/api/templates/video", headers=hx, data={
        "templateSlug": "car-commercial", "startKey": key,
        "variables.BRAND": SCRIPT, "variables.MODEL": IMG + "x" * 20})
    assert r.status_code == 200 and r.headers["x-refused-status"] == "400"  # api.refused_form
    assert_escaped(r.text, SCRIPT, IMG, where="generate error")
    # an unknown template named like a payload
    r = await alice.post("/api/templates/video", headers=hx, data={
        "templateSlug": SCRIPT, "startKey": key, "variables.BRAND": "A"})
    assert r.status_code == 200 and r.headers["x-refused-status"] == "404"
    assert_escaped(r.text, where="unknown template")
    # an accepted one returns the form, the new card and the toast
    r = await alice.post("/api/templates/video/cancel", headers=hx, params={"jobId": ids[0]})
    assert r.status_code == 200
    assert_escaped(r.text, SCRIPT, IMG, where="cancel answer")
    r = await alice.post("/api/templates/video", headers=hx, data={
        "templateSlug": "car-commercial", "startKey": key,
        "variables.BRAND": SCRIPT, "variables.MODEL": IMG})
    assert r.status_code == 202
    assert_escaped(r.text, SCRIPT, IMG, where="generate success")
    # an upload through htmx returns the library tile
    r = await alice.post("/api/library", headers=hx,
                         files={"file": (SCRIPT + ".webp", image_bytes("WEBP"), "image/webp")})
    assert r.status_code == 201
    assert_escaped(r.text, SCRIPT, where="uploaded tile")


async def test_sign_in_pages_render_typed_emails_escaped(idle):
    await idle.get("/login")
    token = idle.cookies["csrftoken"]
    for email in [SCRIPT + "@example.com", IMG + "@example.com"]:
        r = await idle.post("/signup", data={"email": email, "password": "correct-horse-1",
                                             "_csrf_token": token})
        assert r.status_code == 400  # not an address the schema accepts
        assert_escaped(r.text, email, where="signup")
        r = await idle.post("/login", data={"email": email, "password": "wrong-password-1",
                                            "_csrf_token": token})
        assert r.status_code == 400
        assert_escaped(r.text, email.lower(), where="login")
    r = await idle.get("/login", params={"next": "/" + IMG})
    assert_escaped(r.text, "/" + IMG, where="login next")
