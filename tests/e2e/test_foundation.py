"""Foundation in Chromium: sign up, upload an image, see it in the library, browse templates."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import shot, signup, upload

pytestmark = pytest.mark.e2e


def test_signup_upload_and_browse_templates(page: Page, local_server) -> None:
    base = local_server.url
    page.goto(base + "/signup")
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    shot(page, "foundation-01-signup")

    person = signup(page, base, "foundation")
    expect(page.locator(".user-email")).to_have_text(person.email)
    expect(page.locator("#credits .credits-amount")).to_have_text("1000")
    expect(page.locator("#library-empty")).to_be_visible()
    expect(page.locator("#generate button[type=submit]")).to_be_disabled()
    expect(page.locator("#jobs-empty")).to_be_visible()
    shot(page, "foundation-02-empty-workspace")
    page.goto(base + "/jobs")
    expect(page.locator(".empty-state")).to_be_visible()
    shot(page, "foundation-02b-empty-jobs")
    page.goto(base + "/")

    key = upload(page)
    tile = page.locator("#library-grid > .tile").first
    expect(tile).to_have_attribute("data-kind", "image")
    expect(tile.locator("img")).to_be_visible()
    assert key.startswith("users/") and "/library/" in key
    expect(page.locator("#library-empty")).to_have_count(0)
    # The new image becomes the selected one: large in the panel, ringed in the grid.
    expect(page.locator("#workspace-panel .preview-large img")).to_be_visible()
    expect(page.locator("#gen-image")).to_have_value(key)
    expect(tile).to_have_class(r"tile selected")
    page.wait_for_function(
        "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
    shot(page, "foundation-03-uploaded")

    # A second upload takes the selection; picking the first tile again moves it back.
    second = upload(page, "dusk.png", seed=1)
    expect(page.locator("#gen-image")).to_have_value(second)
    expect(page.locator(".tile.selected")).to_have_count(1)
    expect(page.locator(f'.tile[data-key="{second}"]')).to_have_class("tile selected")
    page.locator(f'.tile[data-key="{key}"] a').first.click()
    expect(page.locator("#gen-image")).to_have_value(key)
    expect(page.locator(f'.tile[data-key="{key}"]')).to_have_class("tile selected")
    expect(page.locator(".tile.selected")).to_have_count(1)
    assert page.url.endswith("/?image=" + key.replace("/", "%2F"))

    # The library survives a reload (it is stored, not just drawn).
    page.reload()
    expect(page.locator("#library-grid > .tile")).to_have_count(2)

    page.click("nav.nav >> text=Templates")
    page.wait_for_url(base + "/templates")
    cards = page.locator(".template-card")
    assert cards.count() >= 5
    first = cards.first
    expect(first.locator(".template-name")).not_to_be_empty()
    expect(first.locator(".price")).to_contain_text("credits")
    expect(first.locator("img.template-preview")).to_be_visible()
    expect(page.locator("#generate")).to_be_visible()
    page.wait_for_function(
        "() => [...document.querySelectorAll('img.template-preview')]"
        ".every(i => i.complete && i.naturalWidth > 0)")
    shot(page, "foundation-04-templates")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(base + "/")
    expect(page.locator("#library-grid > .tile")).to_have_count(2)
    shot(page, "foundation-05-workspace-mobile")
    page.goto(base + "/templates")
    shot(page, "foundation-06-templates-mobile")
    # On a phone the form is under the gallery: picking a template brings it into view.
    page.click("#template-travel-postcard .template-link")
    expect(page.locator("#gen-template")).to_have_value("travel-postcard")
    expect(page.locator("#generate .generate-title")).to_be_in_viewport()
    page.wait_for_function(  # the smooth scroll has come to rest with the form at the top
        "() => { const t = document.querySelector('#generate').getBoundingClientRect().top;"
        " return t >= -2 && t < 120; }")
    expect(page.locator("#template-travel-postcard")).to_have_class("template-card selected")
    shot(page, "foundation-07-templates-mobile-picked", full_page=False)
