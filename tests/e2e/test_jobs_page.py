"""The Jobs page and the Account history in Chromium (issue 12, items 7 and 8): compact job
rows with a thumbnail, labelled variables, date, duration and credits; every filter; Load
more that keeps working with live updates; Play in the page's one player; a history that
names each video's template, links to its job, keeps a running balance and shows what
running jobs hold; Account in the main navigation. Against the fake fal queue."""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.crashkit import ServerProcess
from tests.e2e.conftest import shot, signup, upload
from tests.e2e.test_live_workspace import CAR_PRICE, api, wait_final
from tests.fakes.fal_server import FakeFal

pytestmark = pytest.mark.e2e

PAGE = 20  # cards per page of /jobs (app/web/pages.py JOBS_PAGE)
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def submit(context: BrowserContext, base: str, key: str, brand: str, model: str = "GT") -> str:
    r = api(context, base, "POST", "/api/templates/video", data={
        "templateSlug": "car-commercial", "startKey": key,
        "variables": {"BRAND": brand, "MODEL": model}})
    assert r.status == 202, r.text()
    return r.json()["jobId"]


def cancel(context: BrowserContext, base: str, job_id: str) -> None:
    r = api(context, base, "POST", f"/api/templates/video/cancel?jobId={job_id}")
    assert r.status == 200, r.text()


def console_errors(page: Page) -> list[str]:
    """Errors the page logs or throws from now on (the list fills as they happen)."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def card_ids(page: Page, selector: str = ".job-card") -> list[str]:
    return page.eval_on_selector_all(selector, "cs => cs.map(c => c.id.slice(4))")


def test_jobs_page_scans_filters_pages_and_stays_live(page: Page, fal_server: ServerProcess,
                                                      fake: FakeFal) -> None:
    base, ctx = fal_server.url, page.context
    errors = console_errors(page)
    page.set_viewport_size(DESKTOP)
    signup(page, base, "jobs")
    key = upload(page)
    # Oldest first: one failed, one video made, then a page of canceled ones and one that
    # keeps running (the newest, on the first page). (The fake applies a job's spec when
    # the driver submits it: one job in flight at a time when a spec is queued.)
    fake.next_jobs(1, error="The image was flagged", run_time=0.2)
    failed = submit(ctx, base, key, "Flagged")
    assert wait_final(ctx, base, failed)["status"] == "failed"
    done = submit(ctx, base, key, "Aurora", "GT Coupe")
    canceled = []
    for n in range(PAGE - 1):
        canceled.append(submit(ctx, base, key, f"Brand {n}"))
        cancel(ctx, base, canceled[-1])
    assert wait_final(ctx, base, done)["status"] == "completed"
    fake.next_jobs(1, never_complete=True)
    running = submit(ctx, base, key, "Live Motors", "Roadster")

    page.click("nav.nav >> text=Jobs")
    page.wait_for_url(base + "/jobs")
    expect(page.locator("h1")).to_have_text("Jobs")
    expect(page.locator("nav.nav a[aria-current=page]")).to_have_text("Jobs")
    expect(page.locator("nav.filters a")).to_have_text(
        ["All", "Active", "Completed", "Failed", "Canceled", "Batches"])
    page.wait_for_function("() => window.__rf.sse.includes('credits')")  # the stream is open

    # The first page: the newest 20, newest first, and a way to the rest.
    assert card_ids(page) == [running, *reversed(canceled)]
    row = page.locator(f"#job-{running}")
    expect(row.locator(".job-vars")).to_have_text("Brand: Live Motors Model: Roadster")
    expect(row.locator(".job-facts")).to_contain_text(f"{CAR_PRICE} held")
    expect(row.get_by_role("button", name="Cancel")).to_be_visible()
    expect(page.locator(f"#job-{canceled[0]} .job-facts")).to_contain_text("Not charged")
    # Every row is compact, has its picture (the start image) and a date.
    heights = page.eval_on_selector_all(".job-card", "cs => cs.map(c => c.offsetHeight)")
    assert max(heights) < 170, heights
    thumb = row.locator(".job-thumb img")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                           arg=thumb.element_handle())
    # the uploaded picture (640 × 400), not the 128 × 72 placeholder
    assert page.evaluate("img => img.naturalWidth", thumb.element_handle()) == 640
    assert row.locator("time[datetime]").inner_text().strip()
    shot(page, "jobs-01-first-page")

    page.get_by_role("link", name="Load more").click()
    expect(page.locator(".job-card")).to_have_count(PAGE + 2)
    assert card_ids(page)[-2:] == [done, failed]
    expect(page.locator("#jobs-more a")).to_have_count(0)  # that was all
    made = page.locator(f"#job-{done}")
    expect(made.locator(".job-status")).to_have_text("Ready")
    expect(made.locator(".job-facts")).to_contain_text(f"{CAR_PRICE} credits")
    expect(made.locator(".job-facts")).to_contain_text("took 0:")
    expect(made.locator(".job-vars")).to_have_text("Brand: Aurora Model: GT Coupe")
    expect(page.locator(f"#job-{failed} .job-facts")).to_contain_text("Not charged")
    expect(page.locator(f"#job-{failed} .job-error")).to_contain_text("flagged")

    # Live, after Load more: the running job on the first page ends, a new one arrives on
    # top, and the loaded rows stay as they are.
    cancel(ctx, base, running)
    expect(row).to_have_attribute("data-status", "canceled")
    expect(row.locator(".job-facts")).to_contain_text("Not charged")
    fake.next_jobs(1, never_complete=True)
    newest = submit(ctx, base, key, "Newest")
    page.wait_for_selector(f"#job-list > #job-{newest}:first-child")
    expect(page.locator(".job-card")).to_have_count(PAGE + 3)
    assert card_ids(page)[-2:] == [done, failed]
    shot(page, "jobs-02-all-loaded-and-live")

    # Play opens the page's one player with the video.
    made.get_by_role("button", name="Play").click()
    player = page.locator("#player")
    expect(player).to_be_visible()
    page.wait_for_function("() => { const v = document.querySelector('#player video');"
                           " return v && v.readyState >= 2 && v.duration > 0; }")
    shot(page, "jobs-03-player", full_page=False)
    page.keyboard.press("Escape")
    expect(player).to_be_hidden()
    cancel(ctx, base, newest)

    # Every filter, Canceled too.
    for status, expected in (("completed", [done]), ("failed", [failed]),
                             ("canceled", [newest, running, *reversed(canceled)]),
                             ("active", [])):
        page.goto(f"{base}/jobs?status={status}")
        expect(page.locator("nav.filters a[aria-current=page]")).to_have_text(
            status.capitalize())
        shown = card_ids(page)
        # the canceled ones fill more than a page: the first page of them
        assert shown == expected[:PAGE], (status, shown)
    page.goto(f"{base}/jobs?status=canceled")
    page.get_by_role("link", name="Load more").click()
    expect(page.locator(".job-card")).to_have_count(PAGE + 1)
    assert card_ids(page) == [newest, running, *reversed(canceled)]

    page.goto(base + "/jobs")
    page.set_viewport_size(PHONE)
    heights = page.eval_on_selector_all(".job-card", "cs => cs.map(c => c.offsetHeight)")
    assert max(heights) < 200, heights
    shot(page, "jobs-04-phone")
    assert not errors, errors


def test_account_history_names_links_and_balances(page: Page, fal_server: ServerProcess,
                                                  fake: FakeFal) -> None:
    base, ctx = fal_server.url, page.context
    errors = console_errors(page)
    page.set_viewport_size(DESKTOP)
    signup(page, base, "history")
    key = upload(page)
    done = submit(ctx, base, key, "Aurora")
    assert wait_final(ctx, base, done)["status"] == "completed"
    fake.next_jobs(1, never_complete=True)
    running = submit(ctx, base, key, "Held Motors")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    page.wait_for_url(base + "/account")
    expect(page.locator("nav.nav a[aria-current=page]")).to_have_text("Account")
    history = page.locator("#history")
    # What the running job holds, named and linked.
    hold = history.locator(".holds li")
    expect(hold).to_have_count(1)
    expect(hold).to_contain_text("Held for Car commercial")
    expect(hold).to_contain_text(str(CAR_PRICE))
    expect(hold.locator("a")).to_have_attribute("href", f"/jobs?job={running}#job-{running}")
    # The history: the charge names its template and links to its job; the balance runs
    # down from the one in the header.
    rows = history.locator("table.ledger tbody tr")
    expect(rows).to_have_count(2)
    cells = [[c.strip() for c in r.split("\t")] for r in rows.all_inner_texts()]
    assert [c[1:] for c in cells] == [
        ["Video: Car commercial", f"−{CAR_PRICE}", str(1000 - CAR_PRICE)],
        ["Welcome credits", "+1000", "1000"]], cells
    expect(page.locator("#credits .credits-amount")).to_have_text(str(1000 - CAR_PRICE))
    link = rows.first.locator("a")
    expect(link).to_have_attribute("href", f"/jobs?job={done}#job-{done}")
    shot(page, "account-01-history")
    page.set_viewport_size(PHONE)
    account = page.locator("nav.nav a[href='/account']")
    box = account.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    shot(page, "account-02-phone")

    # The link finds the job, however far down the list it is.
    page.set_viewport_size(DESKTOP)
    link.click()
    page.wait_for_url(f"{base}/jobs?job={done}#job-{done}")
    assert card_ids(page)[0] == done
    expect(page.locator(f"#job-{done} .job-status")).to_have_text("Ready")
    expect(page.locator(".jobs-from")).to_contain_text("Car commercial")
    shot(page, "account-03-linked-job")
    assert not errors, errors
    cancel(ctx, base, running)
