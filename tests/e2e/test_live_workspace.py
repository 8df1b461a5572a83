"""The live workspace in Chromium: generate from both places, watch every step arrive over
the one event stream (no reloads, no polling), toasts, credits, two tabs, a reopened page,
cancel, top-up, failure and retry; against the fake fal queue and the local renderer."""

from __future__ import annotations

import time
from collections import Counter
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext, Page, Request, expect

from tests.crashkit import ServerProcess
from tests.e2e.conftest import TIMEOUT_MS, shot, signup, upload
from tests.fakes.fal_server import FakeFal

pytestmark = pytest.mark.e2e

# The one notice about work in progress (one job: "Generating video…").
GENERATING = "#toast-progress:not([hidden]):has-text('Generating video')"
CAR_PRICE = 80


# -- helpers ----------------------------------------------------------------------------

def record_requests(page: Page) -> list[Request]:
    requests: list[Request] = []
    page.on("request", lambda r: requests.append(r))
    return requests


def fill_car(page: Page, brand: str = "Aurora", model: str = "GT Coupe") -> None:
    page.fill("#var-BRAND", brand)
    page.fill("#var-MODEL", model)


def press_generate(page: Page) -> str:
    """Press Generate; the spinner notice must be there within a second. Returns the new
    job's id (from its card)."""
    before = set(page.eval_on_selector_all(".job-card", "cs => cs.map(c => c.id)"))
    page.click("#generate button[type=submit]")
    clicked = time.monotonic()
    page.wait_for_selector(GENERATING, timeout=1000)
    assert time.monotonic() - clicked < 1.0
    page.wait_for_function(
        "ids => [...document.querySelectorAll('#job-list .job-card')]"
        ".some(c => !ids.includes(c.id))",
        arg=sorted(before))
    new = [i for i in page.eval_on_selector_all("#job-list .job-card", "cs => cs.map(c => c.id)")
           if i not in before]
    assert len(new) == 1, new
    job_id = new[0].removeprefix("job-")
    # The server's notice (the answer's or the stream's) takes the place of the stand-in
    # shown at the click: still one notice.
    page.wait_for_selector("#toast-progress:not([data-sending])", state="attached")
    expect(page.locator("#toasts .toast[data-sending]")).to_have_count(0)
    expect(page.locator("#toasts .spinner")).to_have_count(1)
    return job_id


def statuses(page: Page, job_id: str) -> list[str]:
    return page.evaluate("id => window.__rf.statuses['job-' + id] || []", job_id)


def wait_status(page: Page, job_id: str, status: str) -> None:
    """Wait until the card has shown `status` (recorded as it happens, so a state that has
    already passed counts too)."""
    page.wait_for_function(
        "([id, s]) => (window.__rf.statuses['job-' + id] || []).includes(s)", arg=[job_id, status])


def card(page: Page, job_id: str):
    return page.locator(f"#job-{job_id}")


def credits_shown(page: Page) -> int:
    return int(page.inner_text("#credits .credits-amount").strip())


RANK = ["pending", "queued", "processing", "finalizing", "completed"]


def assert_in_order(seen: list[str], expected: list[str]) -> None:
    """Every expected state was shown, and the card never went back to an earlier one."""
    positions = [seen.index(s) for s in expected]
    assert positions == sorted(positions), seen
    ranks = [RANK.index(s) if s in RANK else len(RANK) for s in seen]
    assert ranks == sorted(ranks), seen


def assert_video_plays(page: Page, selector: str) -> float:
    """Load the video and wait until it has a decoded frame; returns its duration (s)."""
    page.wait_for_selector(selector)
    page.eval_on_selector(selector, "v => { v.muted = true; v.load(); }")
    page.wait_for_function(
        "sel => { const v = document.querySelector(sel); return v && v.readyState >= 2 "
        "&& v.duration > 0 && !v.error; }", arg=selector)
    page.eval_on_selector(selector, "v => v.play()")
    page.wait_for_function("sel => document.querySelector(sel).currentTime > 0", arg=selector)
    return page.eval_on_selector(selector, "v => v.duration")


def assert_card_plays(page: Page, job_id: str) -> float:
    """Play on the job's card opens the page's one player, where the video plays; closed
    again with Escape. Returns the video's duration (s)."""
    card(page, job_id).get_by_role("button", name="Play").click()
    duration = assert_video_plays(page, "#player video")
    page.keyboard.press("Escape")
    expect(page.locator("#player")).to_be_hidden()
    return duration


def tile_video_plays(page: Page) -> float:
    """The library's video tile plays in the shared player (closed again afterwards)."""
    page.click("#library-grid > .tile[data-kind=video] [data-play]")
    duration = assert_video_plays(page, "#player video")
    page.keyboard.press("Escape")
    expect(page.locator("#player")).to_be_hidden()
    return duration


def api(context: BrowserContext, base: str, method: str, path: str, **kw):
    """The JSON API as the signed-in person (the test's own calls, not the page's)."""
    token = next(c["value"] for c in context.cookies(base) if c["name"] == "csrftoken")
    return context.request.fetch(base + path, method=method,
                                 headers={"x-csrftoken": token}, **kw)


def wait_final(context: BrowserContext, base: str, job_id: str) -> dict:
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        body = api(context, base, "GET", f"/api/templates/video/status?jobId={job_id}").json()
        if body["status"] in ("completed", "failed", "canceled"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {body}")


def ready_workspace(page: Page, base: str, name: str) -> str:
    """A new person with one image in the library, on the workspace."""
    signup(page, base, name)
    return upload(page)


# -- fake fal flows ---------------------------------------------------------------------

def test_generate_from_workspace_live(page: Page, fal_server: ServerProcess,
                                      fake: FakeFal) -> None:
    base = fal_server.url
    requests = record_requests(page)
    ready_workspace(page, base, "workspace")
    assert credits_shown(page) == 1000
    page.evaluate("window.__sameDocument = true")
    loaded_at = max(i for i, r in enumerate(requests) if r.resource_type == "document")
    fill_car(page)
    shot(page, "live-01-workspace-ready")

    job_id = press_generate(page)
    shot(page, "live-02-generating-toast")
    # The price is held at once, not charged: the balance stands, with what is held.
    expect(page.locator("#credits .credits-amount")).to_have_text("1000")
    expect(page.locator("#credits .credits-held")).to_have_text(f"· {CAR_PRICE} held")
    # Nothing typed is lost: the form stays as it was.
    expect(page.locator("#var-BRAND")).to_have_value("Aurora")

    wait_status(page, job_id, "queued")
    expect(card(page, job_id).locator(".job-status")).to_have_text("In queue")
    shot(page, "live-03-card-queued")
    wait_status(page, job_id, "processing")
    expect(card(page, job_id)).to_have_attribute("data-status", "processing")
    shot(page, "live-04-card-processing")

    page.wait_for_selector(f"#job-{job_id}.job-card[data-status=completed]")
    assert_in_order(statuses(page, job_id), ["queued", "processing", "completed"])
    assert page.evaluate("window.__sameDocument") is True  # no reload happened

    # The spinner notice gave way to the success toast, with a link to the video.
    toast = page.locator(f"#toast-{job_id}")
    expect(toast).to_contain_text("Video generated")
    expect(toast.locator("a")).to_have_attribute("href", f"/jobs#job-{job_id}")
    expect(page.locator("#toast-progress")).to_be_hidden()
    expect(page.locator("#toasts .spinner")).to_have_count(0)

    # The video is in the library (pushed, not reloaded) and plays, there and on the card.
    assert tile_video_plays(page) > 0
    assert assert_card_plays(page, job_id) > 0
    expect(card(page, job_id).locator("a[download]")).to_be_visible()

    # Charged once, by the price.
    expect(page.locator("#credits .credits-amount")).to_have_text(str(1000 - CAR_PRICE))
    me = api(page.context, base, "GET", "/api/me").json()
    assert me["credits"] == me["available"] == 1000 - CAR_PRICE
    shot(page, "live-05-completed")

    # One EventSource; nothing asked for job status, nothing on a timer.
    since = requests[loaded_at:]
    events = [r for r in since if urlsplit(r.url).path == "/events"]
    assert len(events) == 1, [r.url for r in events]
    assert not [r for r in requests if "/api/templates/video/status" in r.url]
    calls = Counter((r.method, urlsplit(r.url).path) for r in since
                    if r.resource_type in ("xhr", "fetch", "eventsource"))
    assert all(n == 1 for n in calls.values()), calls
    assert ("POST", "/api/templates/video") in calls


def test_generate_from_templates_tab(page: Page, fal_server: ServerProcess,
                                     fake: FakeFal) -> None:
    base = fal_server.url
    key = ready_workspace(page, base, "templates")
    page.click("nav.nav >> text=Templates")
    page.wait_for_url(base + "/templates")
    expect(page.locator(".template-card.selected")).to_have_count(1)
    expect(page.locator("#template-car-commercial")).to_have_class("template-card selected")

    # Picking a card loads its form, and the highlight follows the choice.
    page.click("#template-product-turntable .template-link")
    expect(page.locator("#gen-template")).to_have_value("product-turntable")
    expect(page.locator("#template-product-turntable")).to_have_class("template-card selected")
    expect(page.locator(".template-card.selected")).to_have_count(1)
    expect(page.locator("#var-PRODUCT")).to_be_visible()
    expect(page.locator("#gen-image")).to_have_value(key)
    # …and so does choosing in the form's own list.
    page.select_option("#gen-template", "food-close-up")
    expect(page.locator("#var-DISH")).to_be_visible()
    expect(page.locator("#template-food-close-up")).to_have_class("template-card selected")
    page.click("#template-product-turntable .template-link")
    expect(page.locator("#var-PRODUCT")).to_be_visible()

    # The server's inline validation message, with nothing lost.
    page.fill("#var-MATERIAL", "brushed aluminium")
    page.click("#generate button[type=submit]")
    expect(page.locator("#err-PRODUCT")).to_be_visible()
    expect(page.locator("#var-MATERIAL")).to_have_value("brushed aluminium")
    expect(page.locator("#var-PRODUCT")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#template-product-turntable")).to_have_class("template-card selected")
    shot(page, "templates-01-validation")

    page.fill("#var-PRODUCT", "wireless headphones")
    job_id = press_generate(page)
    expect(card(page, job_id).locator(".job-title")).to_have_text("Product turntable")
    expect(page.locator("#credits .credits-held")).to_have_text("· 50 held")
    shot(page, "templates-02-generating")
    page.wait_for_selector(f"#job-{job_id}.job-card[data-status=completed]")
    assert_in_order(statuses(page, job_id), ["queued", "processing", "completed"])
    assert assert_card_plays(page, job_id) > 0
    expect(page.locator(f"#toast-{job_id}")).to_contain_text("Video generated")
    expect(page.locator("#credits .credits-amount")).to_have_text("950")
    shot(page, "templates-03-completed")


def test_two_tabs_both_update(context: BrowserContext, fal_server: ServerProcess,
                              fake: FakeFal) -> None:
    base = fal_server.url
    first = context.new_page()
    ready_workspace(first, base, "twotabs")
    second = context.new_page()
    second.goto(base + "/")
    # (a function, not an expression: Playwright evaluates it once, re-evaluating an
    # expression at each poll is an eval the app's CSP refuses)
    second.wait_for_function("() => window.__rf.sse.includes('credits')")  # its stream is open
    fill_car(first)
    job_id = press_generate(first)

    # The other tab hears of the new job from the stream alone.
    second.wait_for_selector(f"#job-list #job-{job_id}")
    second.wait_for_selector(GENERATING)
    expect(second.locator("#credits .credits-held")).to_have_text(f"· {CAR_PRICE} held")
    for tab in (first, second):
        tab.wait_for_selector(f"#job-{job_id}.job-card[data-status=completed]")
        assert_in_order(statuses(tab, job_id), ["processing", "completed"])
        tab.wait_for_selector("#library-grid > .tile[data-kind=video]")
        expect(tab.locator(f"#toast-{job_id}")).to_contain_text("Video generated")
        expect(tab.locator("#credits .credits-amount")).to_have_text(str(1000 - CAR_PRICE))
    # The form's "You have N available" follows the live balance in both tabs too.
    for tab in (first, second):
        expect(tab.locator("#generate [data-available]")).to_have_text(str(1000 - CAR_PRICE))
    shot(first, "tabs-01-first")
    shot(second, "tabs-02-second")


def test_reopen_after_closing_mid_job(context: BrowserContext, fal_server: ServerProcess,
                                      fake: FakeFal) -> None:
    base = fal_server.url
    page = context.new_page()
    ready_workspace(page, base, "reopen")
    fill_car(page)
    job_id = press_generate(page)
    wait_status(page, job_id, "queued")
    page.close()  # the job goes on without anyone watching

    assert wait_final(context, base, job_id)["status"] == "completed"
    again = context.new_page()
    again.goto(base + "/")
    toast = again.locator(f"#toast-{job_id}")
    expect(toast).to_contain_text("Your video is ready")
    expect(toast.locator("a")).to_have_attribute("href", f"/jobs#job-{job_id}")
    expect(card(again, job_id)).to_have_attribute("data-status", "completed")
    assert tile_video_plays(again) > 0
    expect(again.locator("#credits .credits-amount")).to_have_text(str(1000 - CAR_PRICE))
    shot(again, "reopen-01-ready-toast")

    # Announced once: after a reload the stream does not say it again. A job submitted
    # now arrives through the same stream after its snapshot, so once its card is here the
    # whole snapshot has been seen.
    again.reload()
    again.wait_for_function("() => window.__rf.sse.includes('credits')")
    fake.next_jobs(1, never_complete=True)
    key = again.locator("#gen-image").input_value()
    other = api(context, base, "POST", "/api/templates/video", data={
        "templateSlug": "car-commercial", "startKey": key,
        "variables": {"BRAND": "Later", "MODEL": "X"}})
    assert other.status == 202, other.text()
    other_id = other.json()["jobId"]
    again.wait_for_selector(f"#job-list #job-{other_id}")
    expect(again.locator(f"#toast-{job_id}")).to_have_count(0)
    expect(again.locator("#toasts")).not_to_contain_text("is ready")
    toasts_seen = again.evaluate("window.__rf.toasts.map(t => t.text)")
    assert not [t for t in toasts_seen if "is ready" in t], toasts_seen
    expect(card(again, job_id)).to_have_attribute("data-status", "completed")
    shot(again, "reopen-02-after-reload")
    assert api(context, base, "POST",
               f"/api/templates/video/cancel?jobId={other_id}").status == 200


def test_cancel_from_card(page: Page, fal_server: ServerProcess, fake: FakeFal) -> None:
    base = fal_server.url
    ready_workspace(page, base, "cancel")
    fake.next_jobs(1, never_complete=True)
    fill_car(page)
    job_id = press_generate(page)
    wait_status(page, job_id, "processing")
    expect(page.locator("#credits .credits-held")).to_have_text(f"· {CAR_PRICE} held")
    shot(page, "cancel-01-running")

    dialogs: list[str] = []

    def accept(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    card(page, job_id).get_by_role("button", name="Cancel").click()
    page.wait_for_selector(f"#job-{job_id}.job-card[data-status=canceled]")
    assert dialogs and "Cancel this video" in dialogs[0]
    expect(card(page, job_id).locator(".job-status")).to_have_text("Canceled")
    expect(card(page, job_id).locator(".job-facts")).to_contain_text("Not charged")
    expect(card(page, job_id).get_by_role("button", name="Cancel")).to_have_count(0)
    expect(page.locator(f"#toast-{job_id}")).to_contain_text("Video canceled")
    expect(page.locator("#credits .credits-amount")).to_have_text("1000")
    assert [j for j in fake.jobs.values() if j.cancelled], "fal was not told to cancel"
    shot(page, "cancel-02-canceled")


def test_failure_shows_reason_and_retry_completes(page: Page, fal_server: ServerProcess,
                                                  fake: FakeFal) -> None:
    base = fal_server.url
    ready_workspace(page, base, "failure")
    reason = "The image was flagged by the content checker"
    fake.next_jobs(1, error=reason, run_time=0.5)
    fill_car(page, "Retry Motors", "R1")
    job_id = press_generate(page)
    page.wait_for_selector(f"#job-{job_id}.job-card[data-status=failed]")
    expect(card(page, job_id).locator(".job-error")).to_contain_text(reason)
    toast = page.locator(f"#toast-{job_id}")
    expect(toast).to_contain_text("Video failed")
    expect(toast).to_contain_text(reason)
    expect(page.locator("#credits .credits-amount")).to_have_text("1000")
    shot(page, "failure-01-failed")

    # Retry from the card sends the same template, image and words again.
    fill_car(page, "", "")  # the form is not what Retry submits
    card(page, job_id).get_by_role("button", name="Retry").click()
    page.wait_for_selector(GENERATING, timeout=1000)
    retry_id = page.wait_for_function(
        "old => { const c = document.querySelector('#job-list .job-card');"
        " return c && c.id !== 'job-' + old && c.id.slice(4); }", arg=job_id).json_value()
    expect(card(page, retry_id).locator(".job-vars")).to_contain_text("Retry Motors")
    page.wait_for_selector(f"#job-{retry_id}.job-card[data-status=completed]")
    assert assert_card_plays(page, retry_id) > 0
    expect(card(page, job_id)).to_have_attribute("data-status", "failed")
    expect(page.locator("#credits .credits-amount")).to_have_text(str(1000 - CAR_PRICE))
    shot(page, "failure-02-retried")

    # The jobs page lists both, newest first, and retries from there too.
    page.goto(base + "/jobs")
    expect(page.locator(".job-card")).to_have_count(2)
    assert page.eval_on_selector_all(".job-card", "cs => cs.map(c => c.id)") == [
        f"job-{retry_id}", f"job-{job_id}"]
    shot(page, "failure-03-jobs-page")
    page.goto(base + "/jobs?status=failed")
    expect(page.locator(".job-card")).to_have_count(1)
    fake.next_jobs(1, never_complete=True)
    page.locator(f"#job-{job_id}").get_by_role("button", name="Retry").click()
    page.wait_for_selector(GENERATING, timeout=1000)
    shot(page, "failure-04-jobs-page-retry")
    me = api(page.context, base, "GET", "/api/me").json()
    assert me["available"] == 1000 - 2 * CAR_PRICE


# -- other servers ----------------------------------------------------------------------

def test_insufficient_credits_shows_top_up_toast(page: Page, poor_server: ServerProcess) -> None:
    base = poor_server.url
    ready_workspace(page, base, "poor")
    assert credits_shown(page) == 10
    fill_car(page, "Aurora", "Tiny")
    page.click("#generate button[type=submit]")
    toast = page.locator("#toasts .toast:has-text('Not enough credits')")
    expect(toast).to_be_visible()
    expect(toast).to_contain_text(str(CAR_PRICE))
    link = toast.locator("a[href='/account']")
    expect(link).to_be_visible()
    expect(page.locator("#var-BRAND")).to_have_value("Aurora")
    expect(page.locator("#var-MODEL")).to_have_value("Tiny")
    expect(page.locator("#job-list .job-card")).to_have_count(0)
    expect(page.locator(GENERATING)).to_have_count(0)
    expect(page.locator("#generate button[type=submit]")).to_be_enabled()
    shot(page, "credits-01-top-up-toast")
    link.click()
    page.wait_for_url(base + "/account")
    expect(page.locator("dl.stats")).to_contain_text("10")
    shot(page, "credits-02-account")


def test_local_provider_end_to_end(page: Page, local_server: ServerProcess) -> None:
    base = local_server.url
    ready_workspace(page, base, "local")
    page.select_option("#gen-template", "food-close-up")
    page.fill("#var-DISH", "truffle ramen")
    job_id = press_generate(page)
    wait_status(page, job_id, "queued")
    shot(page, "local-01-rendering")
    page.wait_for_selector(f"#job-{job_id}.job-card[data-status=completed]")
    assert_in_order(statuses(page, job_id), ["queued", "completed"])
    card(page, job_id).get_by_role("button", name="Play").click()
    duration = assert_video_plays(page, "#player video")
    assert 4 <= duration <= 6, duration  # the template asks for 5 s
    size = page.eval_on_selector("#player video", "v => [v.videoWidth, v.videoHeight]")
    assert size == [640, 360], size
    page.keyboard.press("Escape")
    assert tile_video_plays(page) == duration
    expect(page.locator("#credits .credits-amount")).to_have_text("950")
    shot(page, "local-02-completed")
    page.set_viewport_size({"width": 390, "height": 844})
    expect(card(page, job_id).get_by_role("button", name="Play")).to_be_visible()
    shot(page, "local-03-completed-mobile")

    # The library's video can be downloaded and deleted.
    tile = page.locator("#library-grid > .tile[data-kind=video]")
    href = tile.locator("a[download]").get_attribute("href")
    assert api(page.context, base, "GET", href).headers["content-type"].startswith("video/mp4")
    page.once("dialog", lambda d: d.accept())
    tile.get_by_role("button", name="Delete").click()
    expect(tile).to_have_count(0)
    page.reload()
    expect(page.locator("#library-grid > .tile[data-kind=video]")).to_have_count(0)
    expect(page.locator("#library-grid > .tile[data-kind=image]")).to_have_count(1)
