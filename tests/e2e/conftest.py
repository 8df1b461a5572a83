"""Browser fixtures: Debian's Chromium driven by Playwright (sync API), the real server in a
subprocess (tests/crashkit.ServerProcess) with the local provider or with the fake fal
queue, a fresh signed-up person per test, and `shot()` for screenshots.

Chromium is started once and shared by the consecutive e2e tests. It is stopped as soon as
the next test is not a browser test: the sync API marks its event loop as running while it
is alive, which would stop pytest-asyncio from running the async tests that follow."""

from __future__ import annotations

import io
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    sync_playwright,
)

from tests.crashkit import ServerProcess
from tests.fakes.fal_server import FakeFal

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 30_000
PASSWORD = "correct-horse-1"
# fal jobs in the browser tests: long enough in each state to be seen, short enough to be quick
QUEUE_TIME = 1.2
RUN_TIME = 1.5

# Recorded in every page before its own scripts run: each job card's data-status values in
# the order they appeared (cards are replaced whole by swaps, so watch additions too), the
# toasts that were added, and the names of the SSE events that arrived.
RECORDER = """
(() => {
  const rf = window.__rf = {statuses: {}, toasts: [], sse: [], t0: performance.now()};
  function note(card) {
    const list = rf.statuses[card.id] = rf.statuses[card.id] || [];
    const s = card.getAttribute("data-status");
    if (list[list.length - 1] !== s) list.push(s);
  }
  function scan(node) {
    if (node.nodeType !== 1) return;
    if (node.matches(".job-card")) note(node);
    node.querySelectorAll(".job-card").forEach(note);
    if (node.matches(".toast")) rf.toasts.push({text: node.textContent.replace(/\\s+/g, " ").trim(),
                                                  at: performance.now(), id: node.id});
  }
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === "attributes") { if (r.target.matches(".job-card")) note(r.target); }
      else r.addedNodes.forEach(scan);
    }
  }).observe(document, {subtree: true, childList: true, attributes: true,
                        attributeFilter: ["data-status"]});
  document.addEventListener("htmx:sseBeforeMessage", (e) => rf.sse.push(e.detail.type), true);
})();
"""

# Every Content-Security-Policy violation in any page is written to the console, where the
# `context` fixture collects it (a page's own variables die with each navigation).
CSP_WATCH = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.effectiveDirective} refused ${e.blockedURI || "inline"} ` +
                `at ${e.sourceFile || location.href}:${e.lineNumber} ${e.sample || ""}`);
}, true);
"""


PIN_TOASTS = """on => {
  const toasts = document.getElementById("toasts");
  // only a fixed stack: where the toasts are part of the page's flow they stay there
  if (on && toasts && getComputedStyle(toasts).position !== "fixed") return;
  if (on) {
    document.body.style.position = "relative";
    if (toasts) toasts.style.setProperty("position", "absolute", "important");
  } else {  // leave no style="" behind: the page never has one of its own
    document.body.removeAttribute("style");
    if (toasts) toasts.removeAttribute("style");
  }
}"""


def shot(page: Page, name: str, full_page: bool = True) -> Path:
    """Save a screenshot of the page as tests/e2e/artifacts/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if full_page:
        page.evaluate("window.scrollTo(0, 0)")  # or the sticky header lands mid-page
    # A full-page shot draws fixed elements where the first screen ends; pin the toasts to
    # the page's bottom corner instead, where someone scrolled down would see them. Through
    # the CSSOM: the app's CSP refuses an added <style> (and the shot would count as one).
    if full_page:
        page.evaluate(PIN_TOASTS, True)
    page.screenshot(path=str(path), full_page=full_page)
    if full_page:
        page.evaluate(PIN_TOASTS, False)
    return path


def sample_image(seed: int = 0) -> bytes:
    """A small, pleasant PNG (a sunset over a road) to upload."""
    w, h = 640, 400
    img = Image.new("RGB", (w, h))
    d = ImageDraw.Draw(img)
    top, bottom = [(40, 60, 140), (120, 40, 90)][seed % 2], (250, 170, 90)
    for y in range(h):
        t = y / h
        color = tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        d.line([(0, y), (w, y)], fill=color)
    d.ellipse([w * 0.6, h * 0.25, w * 0.6 + 90, h * 0.25 + 90], fill=(255, 220, 150))
    d.polygon([(0, h), (w * 0.45, h * 0.62), (w * 0.55, h * 0.62), (w, h)], fill=(50, 50, 60))
    d.rounded_rectangle([w * 0.3, h * 0.68, w * 0.62, h * 0.84], 18, fill=(200, 40, 50))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


class _Chromium:
    """One Chromium for a run of consecutive browser tests."""

    def __init__(self) -> None:
        self.pw: Playwright | None = None
        self.browser: Browser | None = None

    def get(self) -> Browser:
        if self.browser is None:
            self.pw = sync_playwright().start()
            self.browser = self.pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        return self.browser

    def stop(self) -> None:
        if self.browser is not None:
            self.browser.close()
            self.browser = None
        if self.pw is not None:
            self.pw.stop()
            self.pw = None


_CHROMIUM = _Chromium()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    try:
        return (yield)
    finally:  # after the test's fixtures (its pages and contexts) are gone
        if nextitem is None or nextitem.get_closest_marker("e2e") is None:
            _CHROMIUM.stop()


SERVER_FIXTURES = ("local_server", "fal_server", "poor_server")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed browser test carries the tail of its server's log."""
    report = yield
    if report.when == "call":
        item._e2e_call_report = report  # type: ignore[attr-defined]
    if report.failed:
        for name in SERVER_FIXTURES:
            server = getattr(item, "funcargs", {}).get(name)
            if isinstance(server, ServerProcess):
                logs = "\n".join(p.read_text(errors="replace")
                                 for p in sorted(server.data_dir.glob("server-*.log")))
                report.sections.append((f"{name} log (tail)", logs[-6000:]))
    return report


@pytest.fixture
def browser() -> Browser:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs it "
                    "(apt-get install chromium)")
    return _CHROMIUM.get()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "console_errors(*regexes): console errors a browser test causes on purpose")


def _expected(msg: ConsoleMessage, where: str, allowed: list[re.Pattern[str]]) -> bool:
    """The only console errors a browser test may leave:
    - Chromium's report of the page's own document answered 404 (a test visiting a missing
      page on purpose; it checks that status itself). Any subresource or XHR error counts.
    - what the test declares with @pytest.mark.console_errors("regex", …), e.g. a network
      failure it causes on purpose (htmx and Chromium then log it, rightly)."""
    if (msg.text.startswith("Failed to load resource: the server responded with a status of "
                            "404") and msg.location.get("url") == where):
        return True
    return any(p.search(msg.text) for p in allowed)


@pytest.fixture
def context(browser: Browser, request: pytest.FixtureRequest) -> Iterator[BrowserContext]:
    """A fresh browser profile. Every page it opened must have run without a single CSP
    violation and without a single console error or uncaught exception: checked when the
    test ends (Chromium's own console report of a refused resource or inline code, and the
    pages' securitypolicyviolation events). So give `wait_for_function` a function
    (`"() => …"`): Playwright re-evaluates a bare expression with eval at every poll, which
    the app's CSP refuses."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(TIMEOUT_MS)
    ctx.add_init_script(RECORDER)
    ctx.add_init_script(CSP_WATCH)
    violations: list[str] = []
    errors: list[str] = []
    marker = request.node.get_closest_marker("console_errors")
    allowed = [re.compile(p) for p in (marker.args if marker else ())]

    def on_console(msg: ConsoleMessage) -> None:
        where = msg.page.url if msg.page else "?"
        if "CSP violation" in msg.text or "Content Security Policy" in msg.text:
            violations.append(f"{where}: {msg.text}")
        elif msg.type == "error" and not _expected(msg, where, allowed):
            loc = msg.location
            errors.append(f"console.error at {where} ({loc.get('url')}:{loc.get('lineNumber')}): "
                          f"{msg.text}")

    def on_page(pg: Page) -> None:  # uncaught exceptions are per page, not per context
        pg.on("pageerror", lambda exc: errors.append(f"uncaught exception at {pg.url}: {exc}"))

    ctx.on("console", on_console)
    ctx.on("page", on_page)
    yield ctx
    ctx.close()
    assert not violations, "CSP violations:\n" + "\n".join(violations)
    assert not errors, "Console errors in the browser:\n" + "\n".join(errors)


@pytest.fixture(autouse=True)
def _shots_on_failure(request: pytest.FixtureRequest,
                      context: BrowserContext) -> Iterator[None]:
    """A failed test leaves a screenshot of each of its open pages (FAILED-<test>-<n>.png)."""
    yield
    report = getattr(request.node, "_e2e_call_report", None)
    if report is not None and report.failed:
        for n, pg in enumerate(context.pages):
            try:
                shot(pg, f"FAILED-{request.node.name}-{n}")
            except Exception:  # noqa: BLE001, S112 - best effort only
                continue


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


# -- servers ----------------------------------------------------------------------------

def _serve(env: dict[str, str]) -> Iterator[ServerProcess]:
    with tempfile.TemporaryDirectory(prefix="reelforge-e2e-") as tmp:
        server = ServerProcess(Path(tmp), env)
        try:
            server.start()
        except (RuntimeError, TimeoutError) as exc:
            server.kill()
            logs = "\n".join(p.read_text(errors="replace") for p in Path(tmp).glob("server-*.log"))
            raise RuntimeError(f"{exc}; server log:\n{logs[-4000:]}") from exc
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def local_server() -> Iterator[ServerProcess]:
    """The app with the local ffmpeg renderer."""
    yield from _serve({"VIDEO_PROVIDER": "local"})


@pytest.fixture(scope="module")
def fal() -> Iterator[FakeFal]:
    """The fake fal queue; each job spends QUEUE_TIME s queued and RUN_TIME s running."""
    fake = FakeFal(queue_time=QUEUE_TIME, run_time=RUN_TIME).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def fal_server(fal: FakeFal) -> Iterator[ServerProcess]:
    """The app talking to the fake fal queue through the real fal_client."""
    yield from _serve({"VIDEO_PROVIDER": "fal", **fal.env(), "STATUS_INTERVAL": "0.3"})


@pytest.fixture
def fake(fal: FakeFal) -> FakeFal:
    """The fake fal queue, with no faults or special jobs left over from another test."""
    fal.reset()
    return fal


@pytest.fixture(scope="module")
def poor_server() -> Iterator[ServerProcess]:
    """An app whose new accounts start with only 10 credits."""
    yield from _serve({"VIDEO_PROVIDER": "local", "SIGNUP_CREDITS": "10"})


# -- people -----------------------------------------------------------------------------

@dataclass
class Person:
    email: str
    base_url: str


def signup(page: Page, base_url: str, name: str = "creator") -> Person:
    email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
    page.goto(base_url + "/signup")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base_url + "/")
    return Person(email, base_url)


def upload(page: Page, name: str = "sunset.png", seed: int = 0) -> str:
    """Upload through the picker; returns the new tile's library key."""
    before = page.locator("#library-grid > .tile").count()
    page.set_input_files("#upload-file", files=[
        {"name": name, "mimeType": "image/png", "buffer": sample_image(seed)}])
    page.wait_for_function("n => document.querySelectorAll('#library-grid > .tile').length > n",
                           arg=before)
    key = page.locator("#library-grid > .tile").first.get_attribute("data-key")
    # …and the workspace panel has been redrawn with it as the start image, and htmx has
    # finished with the swap (until it has, the new form's controls have no listeners: a
    # template picked in that moment would load nothing).
    page.wait_for_function(
        "key => document.querySelector('#gen-image')?.value === key && "
        "document.querySelector('#workspace-panel')?.dataset.imageKey === key && "
        "!document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')", arg=key)
    return key
