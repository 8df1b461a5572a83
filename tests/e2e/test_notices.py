"""Calm notices and cards in order (issue 12, items 1 and 2), in Chromium against the fake
fal queue: one notice about work in progress however many jobs run, one summary of what
ended while the person was away, a stack of at most 3 toasts that covers neither the
generate form nor the job cards (1280×800 and 390×844), and job cards newest first after
every late arrival."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.crashkit import ServerProcess
from tests.e2e.conftest import TIMEOUT_MS, shot, signup, upload
from tests.e2e.test_live_workspace import api, fill_car
from tests.fakes.fal_server import FakeFal

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SHOWN = "#toasts > .toast:not([hidden])"
PROGRESS = "#toast-progress"

# The most toasts shown at once since it was installed (kept in the page).
WATCH_STACK = """() => {
  window.__maxToasts = 0;
  const count = () => {
    const n = document.querySelectorAll("#toasts > .toast:not([hidden])").length;
    window.__maxToasts = Math.max(window.__maxToasts, n);
  };
  new MutationObserver(count).observe(document.getElementById("toasts"),
                                      {childList: true, subtree: true, attributes: true});
}"""

# Each shown toast that intersects the generate form or a job card, as the screen has them.
OVERLAPS = """() => {
  const boxes = sel => [...document.querySelectorAll(sel)]
    .map(e => [e.id || e.className, e.getBoundingClientRect()]).filter(([, r]) => r.height > 0);
  const hit = (a, b) => a.left < b.right && b.left < a.right &&
                        a.top < b.bottom && b.top < a.bottom;
  const found = [];
  for (const [t, a] of boxes("#toasts > .toast:not([hidden])"))
    for (const [c, b] of boxes("#generate, .job-card")) if (hit(a, b)) found.push(`${t} over ${c}`);
  return found;
}"""


def submit(context: BrowserContext, base: str, key: str, template: str = "food-close-up",
           **variables: str) -> str:
    r = api(context, base, "POST", "/api/templates/video", data={
        "templateSlug": template, "startKey": key, "variables": variables or {"DISH": "Ramen"}})
    assert r.status == 202, r.text()
    return r.json()["jobId"]


def wait_jobs(context: BrowserContext, base: str, ids: list[str], done: bool = True) -> None:
    """Until every job is final (done) or at fal (not done: queued or later)."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    left = set(ids)
    while left and time.monotonic() < deadline:
        for job_id in list(left):
            body = api(context, base, "GET", f"/api/templates/video/status?jobId={job_id}").json()
            final = body["status"] in ("completed", "failed", "canceled")
            if final if done else body["status"] != "pending":
                left.discard(job_id)
        time.sleep(0.1)
    assert not left, f"jobs not {'final' if done else 'submitted'}: {left}"


def assert_covers_nothing(page: Page) -> None:
    """At the top, at the generate form and at the last card: no toast covers either."""
    for where in ("top", "#generate button[type=submit]", "#job-list > .job-card:last-child"):
        if where == "top":
            page.evaluate("window.scrollTo(0, 0)")
        else:
            page.locator(where).scroll_into_view_if_needed()
        assert page.evaluate(OVERLAPS) == [], where


def card_order(page: Page) -> list[tuple[str, int]]:
    return page.eval_on_selector_all(
        "#job-list > .job-card", "cs => cs.map(c => [c.id.slice(4), Number(c.dataset.created)])")


def assert_newest_first(page: Page, context: BrowserContext, base: str, n: int) -> None:
    """The list shows the person's n newest jobs, newest first (as the API lists them)."""
    newest = [j["jobId"] for j in api(context, base, "GET", f"/api/jobs?limit={n}").json()["jobs"]]
    shown = card_order(page)
    assert [i for i, _ in shown] == newest, (shown, newest)
    created = [c for _, c in shown]
    assert created == sorted(created, reverse=True), shown


def test_one_notice_for_five_running_jobs_and_a_stack_of_three(
        page: Page, context: BrowserContext, fal_server: ServerProcess, fake: FakeFal) -> None:
    base = fal_server.url
    page.set_viewport_size(DESKTOP)
    signup(page, base, "notices")
    key = upload(page)
    page.evaluate(WATCH_STACK)
    # Five jobs that stay at fal (queued a while, then rendering) until the test ends them.
    fake.next_jobs(5, queue_time=1.5, never_complete=True, logs=("Generating frames",))
    known = set(fake.jobs)
    fill_car(page)
    page.click("#generate button[type=submit]")
    expect(page.locator(PROGRESS)).to_contain_text("Generating video…", timeout=1000)
    page.wait_for_selector("#job-list > .job-card")
    ids = [submit(context, base, key) for _ in range(4)]
    notice = page.locator(PROGRESS)
    expect(notice).to_contain_text("5 videos generating")
    expect(notice.locator(".spinner")).to_have_count(1)
    expect(notice.locator("a[href='/jobs?status=active']")).to_have_count(1)
    # …and it follows the jobs: some rendering, the rest in fal's queue, summed up.
    expect(notice).to_contain_text("5 rendering")
    expect(page.locator(SHOWN)).to_have_count(1)  # one notice, not one toast per job
    expect(page.locator(".job-card")).to_have_count(5)
    assert_covers_nothing(page)
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "notices-01-desktop-five-running", full_page=False)

    page.set_viewport_size(PHONE)
    expect(page.locator(SHOWN)).to_have_count(1)
    assert_covers_nothing(page)
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "notices-02-phone-five-running", full_page=False)
    page.locator("#generate button[type=submit]").scroll_into_view_if_needed()
    shot(page, "notices-03-phone-at-generate", full_page=False)

    # All five finish at once: five "Video generated" toasts, but never more than 3 shown,
    # newest on top, and the notice about work in progress goes away.
    page.set_viewport_size(DESKTOP)
    new = [r for r in fake.jobs if r not in known]
    assert len(new) == 5, new
    for request_id in new:
        fake.complete_now(request_id)
    page.wait_for_function("() => document.querySelectorAll("
                           "'.job-card[data-status=completed]').length === 5")
    expect(notice).to_be_hidden()
    expect(page.locator("#toasts .toast[hidden]")).to_have_count(0)  # a stub, not a toast
    expect(page.locator(SHOWN)).to_have_count(3)
    expect(page.locator(SHOWN).first).to_contain_text("Video generated")
    assert page.evaluate("window.__maxToasts") == 3
    page.evaluate("window.scrollTo(0, 0)")
    assert page.evaluate(OVERLAPS) == []
    shot(page, "notices-04-desktop-five-done", full_page=False)
    assert_newest_first(page, context, base, 5)
    assert ids[-1] == card_order(page)[0][0]


def test_one_summary_for_jobs_that_ended_away_and_cards_in_order(
        page: Page, context: BrowserContext, fal_server: ServerProcess, fake: FakeFal) -> None:
    base = fal_server.url
    page.set_viewport_size(DESKTOP)
    signup(page, base, "away")
    key = upload(page)
    page.close()  # away: no page, no stream

    # The oldest job stays at fal all along; then ten that end while nobody watches, two of
    # them failing (at most 5 run at once: in rounds).
    fake.next_jobs(1, never_complete=True)
    known = set(fake.jobs)
    oldest = submit(context, base, key, DISH="Slow soup")
    wait_jobs(context, base, [oldest], done=False)
    (held,) = [r for r in fake.jobs if r not in known]
    fake.next_jobs(3, queue_time=0.1, run_time=0.1)
    fake.next_jobs(2, queue_time=0.1, run_time=0.1, error="GPU out of memory")
    fake.next_jobs(5, queue_time=0.1, run_time=0.1)
    for size in (4, 4, 2):
        wait_jobs(context, base, [submit(context, base, key) for _ in range(size)])

    back = context.new_page()
    back.set_viewport_size(DESKTOP)
    back.goto(base + "/")
    back.evaluate(WATCH_STACK)
    summary = back.locator("#toast-away")
    expect(summary).to_contain_text("8 videos ready, 2 failed")
    expect(summary.locator("a[href='/jobs?status=completed']")).to_have_count(1)
    expect(summary.locator("a[href='/jobs?status=failed']")).to_have_count(1)
    expect(back.locator(PROGRESS)).to_contain_text("Generating video…")  # the oldest job
    expect(back.locator(SHOWN)).to_have_count(2)
    back.wait_for_function("() => window.__rf.sse.includes('credits')")  # snapshot seen
    added = back.evaluate("window.__rf.toasts.map(t => t.id)")
    assert set(added) <= {"toast-away", "toast-progress"}, added  # no toast per job
    # Recent videos: the 8 newest, newest first, although the snapshot also brought the
    # older ones (and the oldest, still running).
    assert_newest_first(back, context, base, 8)
    assert back.evaluate(OVERLAPS) == []
    shot(back, "notices-05-desktop-away-summary", full_page=False)

    # The oldest job ends now: its card, new to this page, is filed by its age (not on top:
    # it is older than the eight shown, so Recent videos keeps those).
    fake.complete_now(held)
    expect(back.locator(f"#toast-{oldest}")).to_contain_text("Video generated")
    expect(back.locator(PROGRESS)).to_be_hidden()
    assert_newest_first(back, context, base, 8)
    assert oldest not in [i for i, _ in card_order(back)]
    back.set_viewport_size(PHONE)
    assert back.evaluate(OVERLAPS) == []
    back.evaluate("window.scrollTo(0, 0)")
    shot(back, "notices-06-phone-after-away", full_page=False)
    assert back.evaluate("window.__maxToasts") <= 3

    # Announced once: the next visit has no summary.
    back.reload()
    back.wait_for_function("() => window.__rf.sse.includes('credits')")
    expect(back.locator("#toast-away")).to_have_count(0)
    assert_newest_first(back, context, base, 8)
