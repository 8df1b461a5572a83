"""An accessibility pass with axe-core (tests/e2e/vendor/axe.min.js) on every signed-in page
— workspace, templates, jobs, account, the admin queue and an admin job page — at desktop
(1280×800) and phone (390×844) size, with content on them: an uploaded image, a finished
job and a failed one. No `serious` or `critical` violation may remain; a failure lists each
one with its rule, impact, the elements (CSS selectors) and what axe says is wrong.

axe is loaded with `page.evaluate(source)`: that runs through the DevTools protocol, which
the app's CSP does not govern (a `<script>` tag, as `page.add_script_tag` adds, is refused
by it, and the `context` fixture would fail the test on the violation)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.crashkit import ServerProcess
from tests.e2e.conftest import ARTIFACTS, PASSWORD, shot, signup, upload
from tests.e2e.test_csp_pages import ADMIN, admin_server  # noqa: F401 - a fixture
from tests.e2e.test_live_workspace import api, wait_final
from tests.fakes.fal_server import FakeFal

pytestmark = pytest.mark.e2e

AXE_SOURCE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
BLOCKING = ("serious", "critical")
# WCAG 2.x A and AA and axe's best practices (landmarks, headings, region…).
RUN_OPTIONS = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa",
                                                     "wcag22aa", "best-practice"]},
               "resultTypes": ["violations"]}
RUN_AXE = """async options => {
  const result = await window.axe.run(document, options);
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => ({target: n.target.join(" "), summary: n.failureSummary})),
  }));
}"""


def run_axe(page: Page) -> list[dict]:
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_SOURCE)  # per document: a navigation starts without it
    assert page.evaluate("() => window.axe && window.axe.version") == "4.14.1"
    return page.evaluate(RUN_AXE, RUN_OPTIONS)


def describe(where: str, violation: dict) -> str:
    lines = [f"{where}: {violation['id']} ({violation['impact']}): {violation['help']}"]
    for node in violation["nodes"][:8]:
        summary = " ".join((node["summary"] or "").split())[:300]
        lines.append(f"    {node['target']}  — {summary}")
    if len(violation["nodes"]) > 8:
        lines.append(f"    … and {len(violation['nodes']) - 8} more")
    return "\n".join(lines)


def settle(page: Page) -> None:
    """Loaded, the event stream's first fragments swapped in, nothing mid-swap."""
    page.wait_for_load_state("load")
    page.wait_for_function(
        "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")


def submit(context: BrowserContext, base: str, key: str) -> str:
    r = api(context, base, "POST", "/api/templates/video", data={
        "templateSlug": "car-commercial", "startKey": key,
        "variables": {"BRAND": "Aurora", "MODEL": "GT Coupe"}})
    assert r.status == 202, r.text()
    return r.json()["jobId"]


def test_pages_have_no_serious_or_critical_violations(
        page: Page, context: BrowserContext, admin_server: ServerProcess,  # noqa: F811
        fake: FakeFal) -> None:
    base = admin_server.url
    page.goto(base + "/login")
    page.fill("#email", ADMIN)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")

    # Content on every page: an image, a failed job and a finished one.
    key = upload(page)
    fake.next_jobs(1, error="The image was flagged by the content checker", run_time=0.3)
    failed = submit(context, base, key)
    done = submit(context, base, key)
    assert wait_final(context, base, failed)["status"] == "failed"
    assert wait_final(context, base, done)["status"] == "completed"

    pages = ["/", "/templates", "/jobs", "/account", "/admin", f"/admin/jobs/{done}"]
    problems: list[str] = []
    for size_name, size in VIEWPORTS.items():
        page.set_viewport_size(size)
        for path in pages:
            response = page.goto(base + path)
            assert response is not None and response.status == 200, path
            settle(page)
            # Reflow (WCAG 1.4.10): nothing makes the whole page scroll sideways.
            wide = page.evaluate("() => document.documentElement.scrollWidth - innerWidth")
            if wide > 0:
                problems.append(f"{size_name} {path}: the page is {wide}px wider than the "
                                "viewport (it scrolls sideways)")
            for violation in run_axe(page):
                if violation["impact"] in BLOCKING:
                    problems.append(describe(f"{size_name} {path}", violation))
            name = "-".join(path.strip("/").split("/")[:2]) or "workspace"
            shot(page, f"a11y-{size_name}-{name}")
    assert not problems, ("axe-core found serious or critical violations:\n"
                          + "\n".join(problems))

    # The header's focus ring, reached with the keyboard: solid, and clearly visible on the
    # dark header (WCAG 1.4.11: at least 3:1; the old ring was a faint glow, 1.8:1).
    page.set_viewport_size(VIEWPORTS["desktop"])
    page.goto(base + "/account")
    settle(page)
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent.trim()") == "Sign out":
            break
    ring = page.evaluate("""() => {
      const el = document.activeElement, s = getComputedStyle(el);
      return {visible: el.matches(':focus-visible'), style: s.outlineStyle,
              width: parseFloat(s.outlineWidth), color: s.outlineColor};
    }""")
    assert ring["visible"] and ring["style"] == "solid" and ring["width"] >= 2, ring
    for header_bg in ("#14121f", "#1f1b33"):  # the header's gradient, top to bottom
        assert contrast(ring["color"], header_bg) >= 3, (ring, header_bg)
    page.locator(".site-header").screenshot(path=str(ARTIFACTS / "a11y-focus-sign-out.png"))


def test_an_upload_error_is_shown_once_under_the_drop_zone(
        page: Page, local_server: ServerProcess) -> None:
    """Inline under the drop zone (role="alert", so it is announced), not also as a toast;
    and no console error (the `context` fixture): the refusal is a 200 with
    X-Refused-Status for the page, a 400 for JSON clients."""
    signup(page, local_server.url, "upload-error")
    page.set_input_files("#upload-file", files=[
        {"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image at all"}])
    error = page.locator("#upload-error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("role", "alert")
    assert "image" in error.inner_text().lower(), error.inner_text()
    page.wait_for_timeout(300)  # a toast, if one were coming, is added in the same task
    expect(page.locator("#toasts .toast")).to_have_count(0)
    expect(page.locator("#library-grid > .tile")).to_have_count(0)
    shot(page, "a11y-upload-error-once", full_page=False)
    upload(page)  # a good image afterwards clears the message
    expect(error).to_be_hidden()


def luminance(color: str) -> float:
    """Relative luminance (WCAG) of "#rrggbb" or "rgb(r, g, b)"."""
    if color.startswith("#"):
        rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    else:
        rgb = [int(float(x)) for x in color[color.index("(") + 1:].rstrip(")").split(",")[:3]]
    lin = [s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4
           for s in (v / 255 for v in rgb)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)
