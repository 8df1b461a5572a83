"""A batch in Chromium (issue 13): one batch card that follows its rows live to done in one
bar, opens to its rows' cards, downloads as a zip, and one notice when it ends, with no
toast per row, at 1280×800 and 390×844."""

from __future__ import annotations

import io
import zipfile

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import shot, signup, upload
from tests.e2e.test_live_workspace import api

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}

# Every toast ever shown, by id or text (kept in the page).
WATCH_TOASTS = """() => {
  window.__toasts = [];
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes)
      if (n.nodeType === 1 && n.matches(".toast")) window.__toasts.push(n.id || n.textContent);
  }).observe(document.getElementById("toasts"), {childList: true});
}"""


def test_a_batch_is_one_card_one_bar_one_notice_and_a_zip(page: Page, local_server):
    base = local_server.url
    signup(page, base, "batcher")
    key = upload(page)
    page.evaluate(WATCH_TOASTS)
    r = api(page.context, base, "POST", "/api/batches", data={
        "templateSlug": "product-turntable", "startKey": key, "name": "Desk lamps",
        "rows": [{"variables": {"PRODUCT": f"Lamp {i}"}} for i in range(1, 5)]})
    assert r.status == 202, r.text()
    batch_id, job_ids = r.json()["batchId"], r.json()["jobIds"]

    card = page.locator(f"#job-list > #batch-{batch_id}")
    expect(card).to_be_visible()
    expect(card.locator(".job-title")).to_have_text("Desk lamps")
    for job_id in job_ids:  # the rows are in the batch, not cards of their own
        expect(page.locator(f"#job-list > #job-{job_id}")).to_have_count(0)
    card.locator("summary").click()  # its rows' cards, loaded when opened
    expect(card.locator(".batch-rows > .job-card")).to_have_count(4)
    shot(page, "batch-01-running")

    expect(card).to_have_attribute("data-status", "completed", timeout=90_000)
    expect(card.locator(".batch-meta")).to_contain_text("4 of 4 done")
    # the rows loaded before stayed, and followed their jobs to the end
    expect(card.locator(".batch-rows > .job-card[data-status=completed]")).to_have_count(4)
    width = card.locator(".batch-seg-done").evaluate("e => e.getBoundingClientRect().width")
    bar = card.locator(".batch-bar").evaluate("e => e.getBoundingClientRect().width")
    assert abs(width - bar) < 2, (width, bar)  # the whole bar is done
    notice = page.locator(f"#toast-batch-{batch_id}")
    expect(notice).to_contain_text("Batch ready: Desk lamps")
    expect(notice).to_contain_text("4 of 4 videos ready")
    shown = page.evaluate("window.__toasts")
    # one notice of the batch; no row toasted on its own
    assert shown.count(f"toast-batch-{batch_id}") == 1, shown
    assert not [t for t in shown if any(t == f"toast-{j}" for j in job_ids)], shown
    assert sum(1 for t in shown if "Video generated" in t) == 0, shown
    shot(page, "batch-02-done")

    with page.expect_download() as got:
        card.get_by_role("link", name="Download zip").click()
    with zipfile.ZipFile(io.BytesIO(got.value.path().read_bytes())) as z:
        assert z.namelist() == [f"0{i}-polished-lamp-{i}.mp4" for i in range(1, 5)]
        assert all(z.read(n)[4:8] == b"ftyp" for n in z.namelist())

    page.goto(base + "/jobs?status=batches")
    expect(page.locator(f"#batch-{batch_id}")).to_be_visible()
    expect(page.locator("#job-list > .job-card:not(.batch-card)")).to_have_count(0)
    page.set_viewport_size(PHONE)
    shot(page, "batch-03-phone")
    overflow = page.evaluate("() => document.documentElement.scrollWidth - innerWidth")
    assert overflow <= 0, overflow
