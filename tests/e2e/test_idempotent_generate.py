"""The generate form's Idempotency-Key in Chromium: a press whose answer is lost on the way
back (the request did reach the server and made its job) is pressed again, and the second
press sends the same key, so the server answers with that job instead of making another.
A press that was answered gives way to a fresh key."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, Route, expect

from tests.crashkit import ServerProcess
from tests.e2e.conftest import shot
from tests.e2e.test_live_workspace import api, fill_car, ready_workspace
from tests.fakes.fal_server import FakeFal, JobSpec

pytestmark = pytest.mark.e2e


# The lost answer is a real network failure: Chromium and htmx log it, as they should.
@pytest.mark.console_errors("net::ERR_CONNECTION_RESET", r"^htmx:(sendError|afterRequest), ")
def test_a_press_whose_answer_was_lost_does_not_make_a_second_job(
        page: Page, fal_server: ServerProcess, fake: FakeFal) -> None:
    base = fal_server.url
    ready_workspace(page, base, "lost-answer")
    fake.defaults = JobSpec(never_complete=True)  # the jobs stay on the list
    fill_car(page)
    keys: list[str | None] = []

    def lose_first_answer(route: Route) -> None:
        keys.append(route.request.headers.get("idempotency-key"))
        if len(keys) == 1:
            route.fetch()  # the request reaches the server and makes its job …
            route.abort("connectionreset")  # … but its answer never reaches the page
        else:
            route.continue_()

    page.route("**/api/templates/video", lose_first_answer)
    page.click("#generate button[type=submit]")
    page.wait_for_selector("#toasts .toast:has-text(\"Couldn't reach Reelforge\")")
    page.click("#generate button[type=submit]")  # pressed again, the same inputs
    expect(page.locator("#job-list .job-card")).to_have_count(1)
    shot(page, "idempotent-01-one-job-after-a-lost-answer")
    jobs = api(page.context, base, "GET", "/api/jobs").json()["jobs"]
    assert len(jobs) == 1, jobs
    assert keys[0] and keys[0] == keys[1], keys

    page.click("#generate button[type=submit]")  # answered before: a new submission
    expect(page.locator("#job-list .job-card")).to_have_count(2)
    assert len(keys) == 3 and keys[2] and keys[2] != keys[1], keys
    assert len(api(page.context, base, "GET", "/api/jobs").json()["jobs"]) == 2

    # Retry on a card stays on the page after its answer: each press is a new key (a
    # deliberate second retry is a second job, as before)
    first = jobs[0]["jobId"]
    api(page.context, base, "POST", f"/api/templates/video/cancel?jobId={first}")
    retry = page.locator(f"#job-{first}").get_by_role("button", name="Retry")
    retry.click()
    expect(page.locator("#job-list .job-card")).to_have_count(3)
    expect(retry).to_be_enabled()
    retry.click()
    expect(page.locator("#job-list .job-card")).to_have_count(4)
    assert len(keys) == 5 and len(set(keys[2:])) == 3, keys
