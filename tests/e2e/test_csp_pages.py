"""Every page under the app's Content-Security-Policy in Chromium: signed out (sign-in,
sign-up, 404), and as an admin (workspace with a live job from Generate to the video,
templates, jobs, account, the admin queue and a job's page, 404). The `context` fixture
(tests/e2e/conftest.py) fails the test on any CSP violation; this test also proves the
header is what the browser got, and that what used to be inline (the toast's Dismiss, the
admin's confirm, progress widths, the slow-job delay) still works from static/app.js."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.crashkit import ServerProcess
from tests.e2e.conftest import PASSWORD, shot, upload
from tests.e2e.test_live_workspace import fill_car, press_generate, wait_status
from tests.fakes.fal_server import FakeFal

pytestmark = pytest.mark.e2e

ADMIN = "admin-csp@example.com"


@pytest.fixture(scope="module")
def admin_server(fal: FakeFal) -> Iterator[ServerProcess]:
    """The app on the fake fal queue, with an admin account made by the CLI beforehand (the
    embedded database is the server's own once it runs)."""
    with tempfile.TemporaryDirectory(prefix="reelforge-e2e-csp-") as tmp:
        env = {**os.environ, "DATA_DIR": tmp}
        env.pop("DATABASE_URL", None)  # the server's embedded store in DATA_DIR
        subprocess.run([sys.executable, "-m", "app", "users", "create", "--email", ADMIN,
                        "--password", PASSWORD, "--admin"], env=env, check=True,
                       capture_output=True, timeout=60)
        server = ServerProcess(Path(tmp), {"VIDEO_PROVIDER": "fal", **fal.env(),
                                           "STATUS_INTERVAL": "0.3"})
        try:
            server.start()
            yield server
        finally:
            server.stop()


def visit(page: Page, url: str, status: int = 200) -> None:
    response = page.goto(url)
    assert response is not None and response.status == status, url
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "style-src 'self';" in policy, policy
    page.wait_for_load_state("load")


def test_every_page_runs_under_the_csp(page: Page, admin_server: ServerProcess,
                                       fake: FakeFal) -> None:
    base = admin_server.url
    visit(page, base + "/login")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    visit(page, base + "/signup")
    visit(page, base + "/no-such-page", status=404)
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    visit(page, base + "/admin", status=404)  # signed out: the same not-found page
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()

    visit(page, base + "/login")
    page.fill("#email", ADMIN)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")

    # A live job, from Generate to the video, on the workspace: htmx swaps, the event
    # stream, toasts and the progress bar, all under the policy.
    upload(page)
    fill_car(page)
    done = press_generate(page)
    wait_status(page, done, "processing")
    page.wait_for_selector(f"#job-{done}.job-card[data-status=completed]")
    toast = page.locator(f"#toast-{done}")
    expect(toast).to_contain_text("Video generated")
    shot(page, "csp-01-workspace-completed", full_page=False)
    # Dismiss (a delegated handler, no onclick=), before the toast fades away by itself
    toast.locator(".toast-close").click()
    expect(toast).to_have_count(0)
    page.wait_for_selector(f"#job-{done} [data-play]")

    # A job that stays in fal's queue: its card and the spinner notice, styled by app.js.
    fake.next_jobs(1, queue_time=300)
    waiting = press_generate(page)
    wait_status(page, waiting, "queued")
    slow = page.locator("#toast-progress .toast-slow")
    delay = slow.evaluate("el => [el.dataset.slowIn, el.style.animationDelay]")
    assert float(delay[0]) > 500 and delay[1] == f"{delay[0]}s", delay
    bars = page.eval_on_selector_all(
        ".progress[aria-valuenow] > .bar",
        "bs => bs.map(b => [b.parentElement.getAttribute('aria-valuenow'), b.style.width])")
    assert bars and all(width == f"{now}%" for now, width in bars), bars

    for path in ("/templates", "/jobs", "/account", "/admin", f"/admin/jobs/{done}"):
        visit(page, base + path)
        shot(page, "csp-02-" + path.strip("/").replace("/", "-")[:20])
    visit(page, base + "/no-such-page", status=404)

    # The admin's Cancel asks first (data-confirm, no onsubmit=): dismissed, nothing
    # happens; accepted, the job is canceled.
    visit(page, base + f"/admin/jobs/{waiting}")
    cancel = page.get_by_role("button", name="Cancel job")
    page.once("dialog", lambda dialog: dialog.dismiss())
    cancel.click()
    page.wait_for_timeout(300)
    assert page.url == base + f"/admin/jobs/{waiting}"
    expect(cancel).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    cancel.click()
    page.wait_for_url(base + f"/admin/jobs/{waiting}?done=canceled")
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    shot(page, "csp-03-admin-canceled")
