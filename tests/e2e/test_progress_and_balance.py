"""The job card's bar follows the provider's own progress ("… N%" log lines), and the
header shows the balance with what running jobs hold, then the charged balance. Against the
fake fal queue: the local renderer finishes a clip within one status check (under 1 s),
so its intermediate "Rendering N%" lines are rarely seen by a page; both reach the card
through the same `last_log` and parser (tests/integration/test_progress.py)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.crashkit import ServerProcess
from tests.e2e.conftest import shot
from tests.e2e.test_live_workspace import fill_car, press_generate, ready_workspace
from tests.fakes.fal_server import FakeFal

pytestmark = pytest.mark.e2e

PRICE = 80  # car-commercial
STEPS = ("Generating 20%", "Generating 40%", "Generating 60%", "Generating 80%")

# Every bar value each card showed, with the log line beside it (cards are swapped whole).
BARS = """
(() => {
  const seen = window.__bars = {};
  function note(card) {
    const bar = card.querySelector(".progress[aria-valuenow]");
    if (!bar) return;
    const log = card.querySelector(".job-log");
    const eta = card.querySelector(".job-eta");
    const list = seen[card.id] = seen[card.id] || [];
    const row = [Number(bar.getAttribute("aria-valuenow")), log ? log.textContent : "",
                 eta ? eta.textContent : ""];
    if (JSON.stringify(list[list.length - 1]) !== JSON.stringify(row)) list.push(row);
  }
  new MutationObserver((records) => {
    for (const r of records) r.addedNodes.forEach((n) => {
      if (n.nodeType !== 1) return;
      if (n.matches(".job-card")) note(n);
      n.querySelectorAll(".job-card").forEach(note);
    });
  }).observe(document, {subtree: true, childList: true});
})();
"""


def test_bar_follows_real_progress_and_balance_is_held(page: Page, fal_server: ServerProcess,
                                                       fake: FakeFal) -> None:
    base = fal_server.url
    # Long enough in each step for the driver's checks (and the page) to see it.
    fake.next_jobs(1, queue_time=0.5, run_time=8.0, logs=STEPS)
    page.context.add_init_script(BARS)
    ready_workspace(page, base, "progress")
    badge = page.locator("#credits")
    expect(badge.locator(".credits-amount")).to_have_text("1000")
    expect(badge.locator(".credits-held")).to_have_count(0)

    fill_car(page)
    job_id = press_generate(page)
    # Held, not charged: the balance stands, the hold is named and explained.
    expect(badge.locator(".credits-amount")).to_have_text("1000")
    expect(badge.locator(".credits-held")).to_have_text(f"· {PRICE} held")
    expect(badge).to_have_attribute(
        "title", f"{PRICE} credits are held for videos in progress; "
                 "they are charged only if the video is made")

    # The bar shows the provider's own percentage, and moves with it.
    page.wait_for_function(
        "id => (window.__bars['job-' + id] || []).filter(([v, log]) => v > 0 "
        "&& log === 'Generating ' + v + '%').length >= 2", arg=job_id)
    shot(page, "progress-01-desktop-rendering")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "progress-02-phone-rendering", full_page=False)
    page.set_viewport_size({"width": 1280, "height": 800})

    page.wait_for_selector(f"#job-{job_id}.job-card[data-status=completed]")
    # Charged only now: the balance drops by the price, nothing is held any more.
    expect(badge.locator(".credits-amount")).to_have_text(str(1000 - PRICE))
    expect(badge.locator(".credits-held")).to_have_count(0)
    bars = page.evaluate("id => window.__bars['job-' + id]", job_id)
    rendering = [(v, eta) for v, log, eta in bars if log.startswith("Generating ")]
    values = [v for v, _ in rendering]
    assert values == sorted(values), bars  # it only moves forward
    # From real progress the card counts down, not "usually about…".
    assert any(eta.endswith(" left") for v, eta in rendering if v > 0), bars
    shot(page, "progress-03-desktop-charged")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "progress-04-phone-charged", full_page=False)
