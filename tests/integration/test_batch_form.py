"""The generate form's "Many variants" mode over HTTP: `POST /fragments/batch` reads the
table's fields (`rows[i].variables.NAME`, `rows[i].startKey`, `name`), skips rows left
empty, and records the batch through the batch service; a refusal comes back as the form
as typed with the error on the table's own row and cell, and nothing is created. The
re-renders of the form (`/fragments/generate`, `/fragments/panel`) keep its mode and rows."""

from __future__ import annotations

import re

import pytest

from tests.helpers import Account
from tests.integration.api_support import count, image_bytes, running_app

PRICE = 80  # car-commercial
HTMX = {"hx-request": "true"}


@pytest.fixture
async def alice(idle) -> Account:
    return await Account.signup(idle, "alice@example.com")


@pytest.fixture
async def image(alice) -> str:
    return await alice.upload(image_bytes())


def table(*rows: dict[str, str], start: int = 0) -> dict[str, str]:
    """Form fields for table rows (a row's "" values are cells left empty)."""
    fields = {}
    for i, row in enumerate(rows, start):
        for name, value in row.items():
            key = f"rows[{i}].startKey" if name == "startKey" else f"rows[{i}].variables.{name}"
            fields[key] = value
    return fields


def form(image: str, fields: dict[str, str], **over: str) -> dict[str, str]:
    return {"mode": "batch", "templateSlug": "car-commercial", "startKey": image,
            **fields, **over}


async def batches(account: Account) -> list[dict]:
    r = await account.get("/api/batches")
    assert r.status_code == 200, r.text
    return r.json()["batches"]


def cell(html: str, field: str) -> str:
    """The <input> or <select> tag of a form field."""
    m = re.search(r'<(?:input|select)[^>]*name="' + re.escape(field) + r'"[^>]*>', html)
    assert m, (field, html[:2000])
    return m.group(0)


async def test_rows_become_one_batch_and_empty_rows_are_skipped(idle, alice, image):
    second = await alice.upload(image_bytes(), name="second.png")
    fields = table({"BRAND": "Aurora", "MODEL": "S1"},
                   {"BRAND": "", "MODEL": "", "startKey": ""},  # left empty: not a row
                   {"BRAND": " Borealis ", "MODEL": "S2", "startKey": second})
    fields.update(table({"BRAND": "Cirrus", "MODEL": "S3"}, start=7))  # indices need not follow
    r = await alice.post("/fragments/batch", data=form(image, fields, name="Spring"),
                         headers=HTMX)
    assert r.status_code == 202, r.text
    assert "text/html" in r.headers["content-type"]
    html = r.text
    # The form again, in batch mode, emptied to three rows, with the confirmation inside.
    assert 'id="generate"' in html and 'hx-post="/fragments/batch"' in html
    assert "Batch “Spring” started: 3 videos." in html
    assert html.count('class="batch-row"') == 3
    assert 'value="Aurora"' not in html
    # The credit badge, out of band: 3 × 80 held.
    assert re.search(r'id="credits" hx-swap-oob="true"[^>]*data-credits-available="760"', html)
    # No job card or toast in the answer: the stream brings the batch's own.
    assert "job-card" not in html and "toast" not in html

    [made] = await batches(alice)
    assert made["name"] == "Spring" and made["total"] == 3 and made["credits"] == 3 * PRICE
    detail = (await alice.get(f"/api/batches/{made['batchId']}")).json()
    assert [(j["variables"], j["startKey"]) for j in detail["jobs"]] == [
        ({"BRAND": "Aurora", "MODEL": "S1"}, image),
        ({"BRAND": "Borealis", "MODEL": "S2"}, second),
        ({"BRAND": "Cirrus", "MODEL": "S3"}, image)]
    assert (await alice.me())["available"] == 1000 - 3 * PRICE


async def test_an_empty_optional_cell_takes_the_default(idle, alice, image):
    fields = table({"PRODUCT": "Headphones", "MATERIAL": ""}, {"PRODUCT": "Mug",
                                                               "MATERIAL": "ceramic"})
    r = await alice.post("/fragments/batch", headers=HTMX,
                         data=form(image, fields, templateSlug="product-turntable"))
    assert r.status_code == 202, r.text
    [made] = await batches(alice)
    assert made["name"] == "Product turntable · 2 variants"  # no name given: the service's
    detail = (await alice.get(f"/api/batches/{made['batchId']}")).json()
    assert [j["variables"]["MATERIAL"] for j in detail["jobs"]] == ["polished", "ceramic"]


@pytest.mark.parametrize(("case", "status", "field", "message"), [
    # row 4 of the table is the batch's 3rd row (row 2 is empty): the error names row 4
    ("empty required cell", 400, "rows[3].variables.MODEL", "Row 4: Model is required"),
    ("too long", 400, "rows[0].variables.BRAND", "Row 1: Brand must be at most 40 characters"),
    ("unknown row image", 404, "rows[2].startKey",
     "Row 3: That start image is not in your library"),
])
async def test_a_bad_row_is_shown_on_its_row_and_nothing_is_made(idle, alice, image, case,
                                                                status, field, message):
    rows = [{"BRAND": "Aurora", "MODEL": "S1"}, {"BRAND": "", "MODEL": ""},
            {"BRAND": "Aurora", "MODEL": "S2"}, {"BRAND": "Aurora", "MODEL": "S3"}]
    if case == "empty required cell":
        rows[3]["MODEL"] = ""
    elif case == "too long":
        rows[0]["BRAND"] = "x" * 41
    else:
        rows[2]["startKey"] = "users/someone-else/library/nope.png"
    r = await alice.post("/fragments/batch", data=form(image, table(*rows), name="Kept"),
                         headers=HTMX)
    # As the page's other refused form posts: a 200 carrying the status a JSON client gets.
    assert r.status_code == 200, r.text
    assert r.headers["x-refused-status"] == str(status)
    html = r.text
    assert 'aria-invalid="true"' in cell(html, field)
    assert html.count('aria-invalid="true"') == 1
    assert re.search(r'<p class="field-error" id="batch-error" role="alert">'
                     + re.escape(message), html), html
    # What was typed is all still there, empty row included.
    assert html.count("<tr class=\"batch-row") == 4 and 'value="Kept"' in html
    assert 'value="S3"' in html or case == "empty required cell"
    assert await batches(alice) == [] and count(idle, "video_job") == 0
    assert (await alice.me())["available"] == 1000


async def test_more_than_the_balance_is_refused_whole(idle, alice, image):
    rows = [{"BRAND": "Aurora", "MODEL": f"S{n}"} for n in range(13)]  # 13 × 80 > 1000
    r = await alice.post("/fragments/batch", data=form(image, table(*rows)), headers=HTMX)
    assert r.headers["x-refused-status"] == "402", r.text
    assert ("Not enough credits: 13 videos cost 1040 credits, and you have 1000 available."
            in r.text)
    assert r.text.count('class="batch-row"') == 13
    assert count(idle, "video_job") == 0 and count(idle, "batch") == 0


async def test_nothing_filled_and_form_level_errors(idle, alice, image):
    r = await alice.post("/fragments/batch", data=form(image, table({"BRAND": " ", "MODEL": ""})),
                         headers=HTMX)
    assert r.headers["x-refused-status"] == "400"
    assert "Fill in at least one row." in r.text
    # The batch's own start image is refused at its own field, not under the table.
    r = await alice.post("/fragments/batch", headers=HTMX, data=form(
        "users/x/library/gone.png", table({"BRAND": "A", "MODEL": "B"})))
    assert r.headers["x-refused-status"] == "404"
    assert 'id="err-startKey"' in r.text and 'id="batch-error"' not in r.text
    # A name over 100 characters is refused at the name field.
    r = await alice.post("/fragments/batch", headers=HTMX, data=form(
        image, table({"BRAND": "A", "MODEL": "B"}), name="n" * 101))
    assert r.headers["x-refused-status"] == "400" and 'id="err-name"' in r.text
    # Without htmx (no page to re-render into) the status is the real one.
    r = await alice.post("/fragments/batch", data=form(image, {}))
    assert r.status_code == 400 and "x-refused-status" not in r.headers
    assert count(idle, "batch") == 0


async def test_the_row_limit_holds_on_the_server(tmp_path):
    from app.settings import Settings

    settings = Settings(data_dir=tmp_path, database_url="mem://", batch_max_rows=2)
    async with running_app(settings, idle=True) as client:
        alice = await Account.signup(client, "alice@example.com")
        key = await alice.upload(image_bytes())
        page = await alice.get("/fragments/generate", params={"mode": "batch"})
        assert 'data-max-rows="2"' in page.text
        rows = [{"BRAND": "A", "MODEL": str(n)} for n in range(3)]
        r = await alice.post("/fragments/batch", data=form(key, table(*rows)), headers=HTMX)
        assert r.headers["x-refused-status"] == "400"
        assert "A batch has at most 2 rows; this one has 3" in r.text
        assert count(client, "batch") == 0


async def test_not_signed_in(idle):
    await idle.get("/login")
    r = await idle.post("/fragments/batch", data={"mode": "batch"},
                        headers={"x-csrftoken": idle.cookies.get("csrftoken"), **HTMX})
    assert r.status_code == 401


async def test_rerenders_keep_the_mode_and_the_rows(idle, alice, image):
    # Single → many: what the single form held goes to row 1; three rows to start.
    r = await alice.get("/fragments/generate", params={
        "mode": "batch", "templateSlug": "car-commercial", "variables.BRAND": "Aurora",
        "variables.MODEL": ""})
    html = r.text
    assert 'id="gen-mode-batch" name="mode" value="batch" checked' in html
    assert 'hx-post="/fragments/batch"' in html and html.count('class="batch-row"') == 3
    assert 'value="Aurora"' in cell(html, "rows[0].variables.BRAND")
    assert 'aria-label="Brand, row 1"' in cell(html, "rows[0].variables.BRAND")
    # A default the single form showed is not carried as typed: the rows stay empty.
    r = await alice.get("/fragments/generate", params={
        "mode": "batch", "templateSlug": "product-turntable", "variables.PRODUCT": "",
        "variables.MATERIAL": "polished"})
    assert 'placeholder="polished"' in cell(r.text, "rows[0].variables.MATERIAL")
    assert 'value=""' in cell(r.text, "rows[0].variables.MATERIAL")
    # Another template: the mode, the name and the rows stay (by variable name).
    r = await alice.get("/fragments/generate", params={
        "mode": "batch", "templateSlug": "product-turntable", "name": "Mine",
        **table({"BRAND": "Aurora"}, {"BRAND": "B"}, {"BRAND": "C"}, {"BRAND": "D"})})
    html = r.text
    assert html.count('class="batch-row"') == 4 and 'value="Mine"' in html
    assert "rows[0].variables.PRODUCT" in html and "variables.BRAND" not in html
    # The workspace panel (a new start image) keeps them too.
    r = await alice.get("/fragments/panel", params={
        "image": image, "mode": "batch", **table({"BRAND": "Aurora", "MODEL": "S1"})})
    assert 'value="S1"' in cell(r.text, "rows[0].variables.MODEL")
    # Many → single: row 1 goes back to the single form.
    r = await alice.get("/fragments/generate", params={
        "mode": "single", **table({"BRAND": "Aurora", "MODEL": "S1"})})
    html = r.text
    assert 'hx-post="/api/templates/video"' in html and "batch-row" not in html
    assert re.search(r'id="var-MODEL" name="variables.MODEL" type="text"\s+value="S1"', html)


async def test_form_fields_carry_the_catalogue_limits(idle, alice, image):
    """Each variable's label, placeholder and maxLength from scripts/templates.json reach
    the single form and the batch table's cells (the template is a typed record now)."""
    r = await alice.get("/fragments/generate", params={"templateSlug": "car-commercial"})
    single = cell(r.text, "variables.BRAND")
    assert 'maxlength="40"' in single and 'placeholder="e.g. Aurora Motors"' in single
    assert '<label for="var-BRAND">Brand</label>' in r.text
    r = await alice.get("/fragments/generate", params={
        "mode": "batch", "templateSlug": "product-turntable"})
    assert 'maxlength="30"' in cell(r.text, "rows[0].variables.MATERIAL")
    assert 'maxlength="40"' in cell(r.text, "rows[0].variables.PRODUCT")
