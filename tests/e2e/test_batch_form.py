"""The generate form's "Many variants" mode in Chromium: a spreadsheet pasted into the table
(a real paste event), the live total, a submitted batch checked over the JSON API and then
followed on the page (one batch card to done, one notice, no toast per row, the zip), a bad
row shown on its row with nothing created, and the row actions (add, duplicate, remove)."""

from __future__ import annotations

import io
import zipfile

import pytest
from playwright.sync_api import Page, expect

from tests.crashkit import ServerProcess
from tests.e2e.conftest import shot, signup, upload
from tests.e2e.test_accessibility import BLOCKING, describe, run_axe

pytestmark = pytest.mark.e2e

PRICE = 80  # car-commercial
# Copied from a spreadsheet saved as CSV: a header (labels, any case, in another order than
# the table's), a quoted value holding a comma, start images by name (one not in the
# library), CRLF line ends and a final newline.
CSV = ('model,BRAND,Start image\r\n"GT Coupe, 2026",Aurora,\r\nS1,Aurora,sunset.png\r\n'
       'S2,Borealis,\r\nRoadster,Cirrus,nowhere.png\r\nX5,Cirrus,\r\n')
ROWS = [("Aurora", "GT Coupe, 2026"), ("Aurora", "S1"), ("Borealis", "S2"),
        ("Cirrus", "Roadster"), ("Cirrus", "X5")]

# Every toast ever added to the page, by id (or its text), kept in the page.
WATCH_TOASTS = """() => {
  window.__toasts = [];
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes)
      if (n.nodeType === 1 && n.matches(".toast")) window.__toasts.push(n.id || n.textContent);
  }).observe(document.getElementById("toasts"), {childList: true});
}"""

PASTE = """([selector, text]) => {
  const cell = document.querySelector(selector);
  cell.focus();
  const data = new DataTransfer();
  data.setData("text/plain", text);
  const event = new ClipboardEvent("paste", {clipboardData: data, bubbles: true,
                                             cancelable: true});
  cell.dispatchEvent(event);
  return event.defaultPrevented;
}"""


def many_variants(page: Page) -> None:
    """Switch the form to "Many variants" (by keyboard, as the segmented control allows)."""
    page.focus("#gen-mode-single")
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#generate.generate-batch #batch-rows")
    expect(page.locator("#gen-mode-batch")).to_be_focused()  # focus survives the re-render
    expect(page.locator("#gen-mode-batch")).to_be_checked()


def table_values(page: Page) -> list[list[str]]:
    return page.eval_on_selector_all(
        "#batch-rows tbody tr",
        "rows => rows.map(r => [...r.querySelectorAll('input[data-var]')].map(i => i.value))")


def test_paste_five_rows_and_submit_one_batch(page: Page, local_server: ServerProcess) -> None:
    base = local_server.url
    signup(page, base, "batch")
    sunset = upload(page)
    beach = upload(page, "beach.png", seed=1)  # the newest: the form's start image
    page.fill("#var-BRAND", "Typed")
    many_variants(page)
    # What the single form held is row 1; three rows to start; the header names the columns.
    assert table_values(page) == [["Typed", ""], ["", ""], ["", ""]]
    headers = page.locator("#batch-rows thead th").all_inner_texts()
    assert headers[1:4] == ["Brand", "Model", "Start image"]
    expect(page.locator("[data-batch-total]")).to_have_text(f"1 video × {PRICE} credits = "
                                                            f"{PRICE} credits")

    # A plain value pasted into one cell is the browser's to paste.
    assert page.evaluate(PASTE, ["#batch-rows tbody tr:nth-child(2) input", "Just text, here"]) \
        is False
    # The spreadsheet, pasted into row 1's Brand cell: five rows, columns by header.
    assert page.evaluate(PASTE, ["#batch-rows input[name='rows[0].variables.BRAND']", CSV])
    assert table_values(page) == [list(r) for r in ROWS]
    expect(page.locator("[data-batch-note]")).to_have_text(
        "Filled 5 rows from the paste. 1 start image is not in your library: its row uses "
        "the one above.")
    expect(page.get_by_label("Start image, row 2")).to_have_value(sunset)
    expect(page.locator("[data-batch-total]")).to_have_text(
        f"5 videos × {PRICE} credits = {5 * PRICE} credits")
    expect(page.locator("[data-batch-submit]")).to_have_text("Generate 5 videos")
    expect(page.locator("#generate [data-short]")).to_be_hidden()
    expect(page.get_by_label("Model, row 5")).to_have_value("X5")
    page.fill("#batch-name", "Spring launch")

    page.set_viewport_size({"width": 1280, "height": 800})
    shot(page, "batch-01-desktop-filled")
    page.locator("#batch-rows").scroll_into_view_if_needed()
    shot(page, "batch-02-desktop-table", full_page=False)
    page.set_viewport_size({"width": 390, "height": 844})
    page.evaluate("() => document.getElementById('batch-name').scrollIntoView()")
    shot(page, "batch-03-phone-filled", full_page=False)
    page.evaluate("() => { const s = document.querySelector('.batch-scroll');"
                  " s.scrollLeft = s.scrollWidth; }")
    shot(page, "batch-04-phone-scrolled", full_page=False)
    # The table scrolls inside its box; the page itself does not scroll sideways.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    assert page.evaluate("() => { const s = document.querySelector('.batch-scroll');"
                         " return s.scrollWidth > s.clientWidth; }")
    page.set_viewport_size({"width": 1280, "height": 800})

    page.evaluate(WATCH_TOASTS)
    page.click("#generate button[type=submit]")
    expect(page.locator(".batch-notice")).to_have_text("Batch “Spring launch” started: 5 videos.")
    assert table_values(page) == [["", ""], ["", ""], ["", ""]]  # ready for the next batch
    expect(page.locator("#gen-mode-batch")).to_be_checked()
    # The badge came with the answer; the form's balance follows it.
    expect(page.locator("#credits")).to_have_attribute("data-credits-available",
                                                        str(1000 - 5 * PRICE))
    expect(page.locator("#generate [data-available]")).to_have_text(str(1000 - 5 * PRICE))
    page.evaluate("() => document.querySelector('.batch-notice').scrollIntoView()")
    shot(page, "batch-06-desktop-started", full_page=False)

    batches = page.request.get(base + "/api/batches").json()["batches"]
    assert len(batches) == 1 and batches[0]["total"] == 5, batches
    assert batches[0]["name"] == "Spring launch" and batches[0]["credits"] == 5 * PRICE
    detail = page.request.get(f"{base}/api/batches/{batches[0]['batchId']}").json()
    assert [(j["variables"]["BRAND"], j["variables"]["MODEL"]) for j in detail["jobs"]] == ROWS
    assert [j["startKey"] for j in detail["jobs"]] == [beach, sunset, beach, beach, beach]
    # Held or already charged, the five rows' price has left what is available.
    assert page.request.get(base + "/api/me").json()["available"] == 1000 - 5 * PRICE
    watch_the_batch_to_the_end(page, base, detail)


def watch_the_batch_to_the_end(page: Page, base: str, detail: dict) -> None:
    """One batch card follows its rows live to done in one bar, opens to its rows' cards,
    gives one notice when it ends and no toast per row, and downloads as a zip."""
    batch_id, job_ids = detail["batchId"], [j["jobId"] for j in detail["jobs"]]
    card = page.locator(f"#job-list > #batch-{batch_id}")
    expect(card.locator(".job-title")).to_have_text("Spring launch")
    for job_id in job_ids:  # the rows are in the batch, not cards of their own
        expect(page.locator(f"#job-list > #job-{job_id}")).to_have_count(0)
    card.locator("summary").click()  # its rows' cards, loaded when opened
    expect(card.locator(".batch-rows > .job-card")).to_have_count(5)
    # In the page's own JS, in one go: the stream replaces the card as its rows move, and a
    # scroll that waits for the element to be stable can find it detached.
    card.evaluate("e => e.scrollIntoView({block: 'nearest'})")
    shot(page, "batch-07-card-running", full_page=False)

    expect(card).to_have_attribute("data-status", "completed", timeout=90_000)
    expect(card.locator(".batch-meta")).to_contain_text("5 of 5 done")
    # the rows loaded before stayed, and followed their jobs to the end
    expect(card.locator(".batch-rows > .job-card[data-status=completed]")).to_have_count(5)
    done = card.locator(".batch-seg-done").evaluate("e => e.getBoundingClientRect().width")
    bar = card.locator(".batch-bar").evaluate("e => e.getBoundingClientRect().width")
    assert abs(done - bar) < 2, (done, bar)  # the whole bar is done
    notice = page.locator(f"#toast-batch-{batch_id}")
    expect(notice).to_contain_text("Batch ready: Spring launch")
    expect(notice).to_contain_text("5 of 5 videos ready")
    shown = page.evaluate("window.__toasts")
    # one notice for the batch; no row toasted on its own
    assert shown.count(f"toast-batch-{batch_id}") == 1, shown
    assert not [t for t in shown if t in {f"toast-{j}" for j in job_ids}], shown
    assert not [t for t in shown if "Video generated" in t], shown
    shot(page, "batch-08-card-done")

    with page.expect_download() as got:
        card.get_by_role("link", name="Download zip").click()
    with zipfile.ZipFile(io.BytesIO(got.value.path().read_bytes())) as z:
        assert z.namelist() == ["01-aurora-gt-coupe-2026.mp4", "02-aurora-s1.mp4",
                                "03-borealis-s2.mp4", "04-cirrus-roadster.mp4",
                                "05-cirrus-x5.mp4"]
        assert all(z.read(n)[4:8] == b"ftyp" for n in z.namelist())

    page.goto(base + "/jobs?status=batches")
    expect(page.locator(f"#batch-{batch_id}")).to_be_visible()
    expect(page.locator("#job-list > .job-card:not(.batch-card)")).to_have_count(0)
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "batch-09-phone-batches-tab")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390


def test_bad_row_is_refused_on_its_row_and_row_actions(page: Page,
                                                       local_server: ServerProcess) -> None:
    base = local_server.url
    signup(page, base, "rows")
    upload(page)
    many_variants(page)
    page.get_by_label("Brand, row 1").fill("Aurora")
    page.get_by_label("Model, row 1").fill("S1")
    page.get_by_label("Brand, row 3").fill("Borealis")  # its Model left empty; row 2 blank

    page.click("#generate button[type=submit]")
    error = page.locator("#batch-error")
    expect(error).to_have_text("Row 3: Model is required")
    expect(page.get_by_label("Model, row 3")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Model, row 3")).to_be_focused()
    expect(page.locator("#batch-rows [aria-invalid]")).to_have_count(1)
    expect(page.locator("#batch-rows tbody tr").nth(2)).to_have_class("batch-row has-error")
    assert table_values(page) == [["Aurora", "S1"], ["", ""], ["Borealis", ""]]  # as typed
    assert page.request.get(base + "/api/batches").json()["batches"] == []
    assert page.request.get(base + "/api/me").json()["available"] == 1000
    problems = [describe("batch form, refused", v) for v in run_axe(page)
                if v["impact"] in BLOCKING]
    assert not problems, "\n".join(problems)
    page.set_viewport_size({"width": 390, "height": 844})
    error.scroll_into_view_if_needed()
    shot(page, "batch-05-phone-bad-row", full_page=False)
    page.set_viewport_size({"width": 1280, "height": 800})

    # Duplicate row 1: the copy comes after it, focus on the copy's Duplicate.
    page.get_by_label("Duplicate row 1").click()
    assert table_values(page) == [["Aurora", "S1"], ["Aurora", "S1"], ["", ""], ["Borealis", ""]]
    expect(page.get_by_label("Duplicate row 2")).to_be_focused()
    # Remove the blank row (now row 3): the rows after it are renumbered.
    page.get_by_label("Remove row 3").click()
    assert table_values(page) == [["Aurora", "S1"], ["Aurora", "S1"], ["Borealis", ""]]
    expect(page.get_by_label("Model, row 3")).to_have_attribute(
        "name", "rows[2].variables.MODEL")
    # Add row: an empty one at the end, focused.
    page.click("#generate [data-row-action=add]")
    assert table_values(page)[-1] == ["", ""] and len(table_values(page)) == 4
    expect(page.get_by_label("Brand, row 4")).to_be_focused()
    page.keyboard.type("Cirrus")
    page.get_by_label("Model, row 3").fill("S3")
    expect(page.locator("[data-batch-total]")).to_have_text(
        f"4 videos × {PRICE} credits = {4 * PRICE} credits")
    expect(page.get_by_label("Model, row 3")).not_to_have_attribute("aria-invalid", "true")

    # Another template keeps the mode, and the rows by variable name.
    page.select_option("#gen-template", "product-turntable")
    page.wait_for_selector("#batch-rows th:has-text('Product')")
    expect(page.locator("#gen-mode-batch")).to_be_checked()
    assert len(table_values(page)) == 4

    # A paste longer than the limit fills up to it and says what was left out; no row can
    # be added then, and the total is more than is available.
    lines = "\n".join(f"Lamp {n}\tbrass" for n in range(103))
    page.evaluate(PASTE, ["#batch-rows input[name='rows[0].variables.PRODUCT']", lines])
    expect(page.locator("#batch-rows tbody tr")).to_have_count(100)
    expect(page.locator("[data-batch-note]")).to_have_text(
        "A batch has at most 100 rows: the last 3 pasted rows were left out.")
    expect(page.locator("#generate [data-row-action=add]")).to_be_disabled()
    expect(page.get_by_label("Duplicate row 100")).to_be_disabled()
    assert table_values(page)[99] == ["Lamp 99", "brass"]
    expect(page.locator("[data-batch-total]")).to_have_text(
        "100 videos × 50 credits = 5000 credits")
    expect(page.locator("#generate [data-short]")).to_be_visible()

    # On the templates tab, picking a template card keeps the mode, the name and the rows.
    page.goto(base + "/templates")
    many_variants(page)
    page.fill("#batch-name", "Lamps")
    page.get_by_label("Brand, row 2").fill("Aurora")
    page.click("#template-product-turntable .template-link")
    page.wait_for_selector("#batch-rows th:has-text('Product')")
    expect(page.locator("#gen-mode-batch")).to_be_checked()
    expect(page.locator("#batch-name")).to_have_value("Lamps")
    expect(page.locator("#batch-rows tbody tr")).to_have_count(3)
