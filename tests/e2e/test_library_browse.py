"""The library as a creator browses it, in Chromium: video tiles with a poster, the
template's name and the date; the one shared player; All / Images / Videos filters; one Tab
stop per tile; and deleting the selected image moves the selection everywhere, in every tab."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.crashkit import ServerProcess
from tests.e2e.conftest import ARTIFACTS, shot, signup, upload

pytestmark = pytest.mark.e2e

VIDEO_TILE = "#library-grid > .tile[data-kind=video]"


def submit(context: BrowserContext, base: str, start_key: str) -> str:
    """A job through the JSON API as the signed-in person (the page learns of it live)."""
    token = next(c["value"] for c in context.cookies(base) if c["name"] == "csrftoken")
    r = context.request.post(base + "/api/templates/video", headers={"x-csrftoken": token},
                             data={"templateSlug": "product-turntable", "startKey": start_key,
                                   "variables": {"PRODUCT": "lemon soda"}})
    assert r.status == 202, r.text()
    return r.json()["jobId"]


def watch_errors(page: Page) -> list[str]:
    """Console errors and uncaught exceptions of the page, to be none."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def focused(page: Page) -> dict:
    return page.evaluate("""() => { const a = document.activeElement;
        return {cls: a.className, label: a.getAttribute('aria-label') || '',
                tile: a.closest('.tile') ? a.closest('.tile').dataset.key : null}; }""")


def selection(page: Page) -> dict:
    """The start image as the form, the panel, its preview and the grid's ring show it."""
    return page.evaluate("""() => ({
        form: document.querySelector('#gen-image').value,
        panel: document.querySelector('#workspace-panel').dataset.imageKey,
        preview: document.querySelector('.preview-large img')?.getAttribute('src') || null,
        ring: [...document.querySelectorAll('#library-grid > .tile.selected')]
              .map(t => t.dataset.key)})""")


def test_video_tiles_player_filters_and_one_tab_stop_per_tile(
        context: BrowserContext, local_server: ServerProcess) -> None:
    base = local_server.url
    page = context.new_page()
    errors = watch_errors(page)
    signup(page, base, "browse")
    first = upload(page, "beach.png", seed=0)
    second = upload(page, "road.png", seed=1)
    submit(context, base, second)

    # The finished video arrives over the stream, after the start images, with its poster,
    # the template's name and the date; no <video> in the tile.
    tile = page.locator(VIDEO_TILE)
    expect(tile).to_have_count(1, timeout=60_000)
    order = page.eval_on_selector_all("#library-grid > .tile", "ts => ts.map(t => t.dataset.kind)")
    assert order == ["image", "image", "video"], order
    expect(tile.locator(".tile-title")).to_have_text("Product turntable")
    expect(tile.locator("time")).to_have_text(re.compile(r"^\w{3} \d{1,2}, \d\d:\d\d( [AP]M)?$"))
    poster = tile.locator(".tile-main img")
    page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=poster.element_handle())
    assert poster.get_attribute("src").endswith(".poster.jpg")
    assert tile.locator("video").count() == 0
    main = tile.locator(".tile-main")
    expect(main).to_have_accessible_name(re.compile(
        r"^Play Product turntable video, \w{3} \d{1,2}, \d{4}, \d\d:\d\d( [AP]M)?$"))
    expect(tile.locator("a[download]")).to_have_accessible_name(
        re.compile(r"^Download Product turntable video, "))
    expect(tile.locator("[data-action=delete]")).to_have_accessible_name(
        re.compile(r"^Delete Product turntable video, "))

    # It plays in the shared player; Escape closes it and focus comes back to the tile.
    main.click()
    player = page.locator("#player")
    expect(player).to_be_visible()
    expect(player.locator("#player-title")).to_contain_text("Product turntable")
    assert player.locator("video").get_attribute("poster").endswith(".poster.jpg")
    page.wait_for_function(
        "() => { const v = document.querySelector('#player video'); "
        "return v.readyState >= 1 && v.duration > 0 && !v.error; }")
    shot(page, "library-01-player", full_page=False)
    page.keyboard.press("Escape")
    expect(player).to_be_hidden()
    assert focused(page)["cls"] == "tile-main tile-play"
    # The close button works too (any [data-play] opens the player: the Jobs page's too).
    main.click()
    player.get_by_role("button", name="Close player").click()
    expect(player).to_be_hidden()

    # Filters, with counts; the choice is remembered.
    filters = page.locator(".library-filter")
    expect(filters.get_by_role("button", name="All")).to_have_accessible_name("All 3")
    filters.get_by_role("button", name="Videos").click()
    expect(page.locator("#library-grid > .tile:visible")).to_have_count(1)
    expect(tile).to_be_visible()
    page.reload()
    expect(page.locator(".library-filter [data-filter=video]")).to_have_attribute(
        "aria-pressed", "true")
    expect(page.locator("#library-grid > .tile:visible")).to_have_count(1)
    page.locator(".library-filter [data-filter=image]").click()
    visible = page.eval_on_selector_all(
        "#library-grid > .tile", "ts => ts.filter(t => t.offsetParent).map(t => t.dataset.key)")
    assert visible == [second, first], visible
    page.locator(".library-filter [data-filter=all]").click()

    # One Tab stop per tile; the arrow keys reach the tile's actions, shown while focused.
    page.locator(".library-filter [data-filter=video]").focus()
    stops = []
    for _ in range(3):
        page.keyboard.press("Tab")
        stops.append(focused(page))
    assert [s["tile"] for s in stops] == [second, first, tile.get_attribute("data-key")], stops
    assert all(s["cls"].startswith("tile-main") for s in stops), stops
    page.keyboard.press("ArrowRight")
    assert focused(page)["label"].startswith("Download Product turntable video")
    page.wait_for_function("el => getComputedStyle(el).opacity === '1'",  # after its fade
                           arg=tile.locator(".tile-actions").element_handle())
    page.keyboard.press("ArrowRight")
    assert focused(page)["label"].startswith("Delete Product turntable video")
    page.locator(".library-panel").screenshot(path=str(ARTIFACTS / "library-02a-keyboard.png"))
    page.keyboard.press("ArrowRight")
    assert focused(page)["cls"].startswith("tile-main")
    page.keyboard.press("Tab")  # out of the grid
    assert focused(page)["tile"] is None
    page.mouse.move(0, 0)
    shot(page, "library-02-desktop")

    # A phone: nothing overlaps inside a tile (actions, caption, play icon).
    page.set_viewport_size({"width": 390, "height": 844})
    boxes = {name: tile.locator(sel).bounding_box() for name, sel in (
        ("actions", ".tile-actions"), ("caption", ".tile-title"), ("icon", ".tile-play-icon"))}
    for a, b in (("actions", "caption"), ("actions", "icon"), ("icon", "caption")):
        x, y = boxes[a], boxes[b]
        apart = (x["x"] + x["width"] <= y["x"] or y["x"] + y["width"] <= x["x"]
                 or x["y"] + x["height"] <= y["y"] or y["y"] + y["height"] <= x["y"])
        assert apart, (a, b, boxes)
    page.locator(".library-panel").scroll_into_view_if_needed()
    shot(page, "library-03-phone")
    main.click()
    expect(page.locator("#player")).to_be_visible()
    shot(page, "library-04-phone-player", full_page=False)
    assert errors == []


def test_deleting_the_selected_image_selects_the_next_everywhere(
        context: BrowserContext, local_server: ServerProcess) -> None:
    base = local_server.url
    page = context.new_page()
    errors = watch_errors(page)
    signup(page, base, "delete")
    oldest = upload(page, "a.png", seed=0)
    middle = upload(page, "b.png", seed=1)
    newest = upload(page, "c.png", seed=0)
    other = context.new_page()  # a second tab, told by the stream
    other.goto(base + "/")
    other.wait_for_function("() => document.body.hasAttribute('sse-connect')")
    for tab in (page, other):
        assert selection(tab)["ring"] == [newest]
    gallery = context.new_page()  # the templates tab: the form without the library grid
    gallery.goto(base + "/templates")
    gallery.wait_for_function("() => document.body.hasAttribute('sse-connect')")
    expect(gallery.locator("#gen-image")).to_have_value(newest)
    page.on("dialog", lambda d: d.accept())

    def url_of(key: str) -> str:
        return page.locator(f".tile[data-key='{key}'] img").get_attribute("src")

    middle_url = url_of(middle)
    page.locator(f".tile[data-key='{newest}'] [data-action=delete]").click()
    for tab in (page, other):
        expect(tab.locator(f".tile[data-key='{newest}']")).to_have_count(0)
        tab.wait_for_function("k => document.querySelector('#gen-image').value === k", arg=middle)
        assert selection(tab) == {"form": middle, "panel": middle, "preview": middle_url,
                                  "ring": [middle]}, selection(tab)
        expect(tab.locator(f"#gen-image option[value='{newest}']")).to_have_count(0)
    assert focused(page)["tile"] == middle  # focus moved to the neighbouring tile
    expect(gallery.locator("#gen-image")).to_have_value(middle)
    expect(gallery.locator(f"#gen-image option[value='{newest}']")).to_have_count(0)

    # Deleting another image leaves the selection alone (and the form forgets it).
    page.locator(f".tile[data-key='{oldest}'] [data-action=delete]").click()
    expect(page.locator(f".tile[data-key='{oldest}']")).to_have_count(0)
    expect(other.locator(f"#gen-image option[value='{oldest}']")).to_have_count(0)
    assert selection(page)["form"] == middle and selection(other)["ring"] == [middle]

    # The last one: the empty state everywhere.
    page.locator(f".tile[data-key='{middle}'] [data-action=delete]").click()
    for tab in (page, other):
        expect(tab.locator("#library-grid > .tile")).to_have_count(0)
        expect(tab.locator("#library-empty")).to_be_visible()
        expect(tab.locator(".library-filter")).to_be_hidden()
        expect(tab.locator("#workspace-panel .preview-large.empty-state")).to_be_visible()
        expect(tab.locator("#generate button[type=submit]")).to_be_disabled()
        assert tab.locator("#gen-image").get_attribute("value") == ""
    shot(page, "library-05-deleted-all")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "library-06-deleted-all-phone")
    assert errors == []


ZONE = "Asia/Kolkata"  # UTC+5:30: no time in it can be mistaken for the same time in UTC


def shown_times(page: Page) -> list[tuple[str, str]]:
    return page.eval_on_selector_all(
        "time[datetime]", "ts => ts.map(t => [t.getAttribute('datetime'), t.textContent])")


def plain(text: str) -> str:
    return text.replace("\u202f", " ").replace("\xa0", " ")  # ICU's narrow spaces


def in_zone(stamp: str) -> str:
    """How en-US shows a time in ZONE: "Dec 2, 09:39 PM"."""
    local = datetime.fromisoformat(stamp).astimezone(ZoneInfo(ZONE))
    return f"{local:%b} {local.day}, {local:%I:%M %p}"


def test_every_time_a_creator_sees_is_in_their_own_zone(
        browser: Browser, local_server: ServerProcess) -> None:
    """The same moment reads the same on the job card, the library tile, the credit
    history and the list of sign-ins: the reader's clock, not the server's UTC."""
    base = local_server.url
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, timezone_id=ZONE,
                              locale="en-US")
    try:
        page = ctx.new_page()
        errors = watch_errors(page)
        signup(page, base, "zone")
        submit(ctx, base, upload(page, "zone.png", seed=2))
        expect(page.locator(VIDEO_TILE)).to_have_count(1, timeout=60_000)
        expect(page.locator("article.job-card").filter(has_text="Ready")).to_have_count(1)
        on_workspace = shown_times(page)

        # The tile's buttons and the player's title name the same time, with its year.
        tile = page.locator(VIDEO_TILE)
        stamp = tile.locator("time").get_attribute("datetime")
        when = datetime.fromisoformat(stamp).astimezone(ZoneInfo(ZONE))
        full = f"{when:%b} {when.day}, {when.year}, {when:%I:%M %p}"
        for control, verb in ((".tile-main", "Play"), ("a[download]", "Download"),
                              ("[data-action=delete]", "Delete")):
            name = tile.locator(control).get_attribute("aria-label")
            assert plain(name) == f"{verb} Product turntable video, {full}", name
        tile.locator(".tile-main").click()
        title = page.locator("#player-title")
        expect(title).to_be_visible()
        assert plain(title.text_content()) == f"Product turntable · {full}"
        page.keyboard.press("Escape")

        page.goto(base + "/account")
        on_account = shown_times(page)

        for stamp, text in on_workspace + on_account:
            assert datetime.fromisoformat(stamp).utcoffset() is not None, stamp
            assert plain(text) == in_zone(stamp), (stamp, text)
        # Both pages have times of each kind: the card's and the tile's, the ledger's and
        # the sign-in's (created and last seen).
        assert len(on_workspace) >= 2, on_workspace
        assert len(on_account) >= 4, on_account
        assert errors == []
    finally:
        ctx.close()
