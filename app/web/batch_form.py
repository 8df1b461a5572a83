"""The generate form's "Many variants" mode, as the page sends it: which mode the form is
in, the table's rows (`rows[i].variables.NAME`, `rows[i].startKey`) and the batch's name,
read from a form post or from the query of a re-render (`/fragments/generate`,
`/fragments/panel`), and turned into the body `BatchService.create` takes.

Rows that are left entirely empty are not part of the batch (the table starts with three);
the others keep their place in the table, so an error about the batch's n-th row is shown
on the table's row it came from."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from app.db.records import Template

MIN_ROWS = 3  # the table starts with this many rows
ROW_FIELD = re.compile(r"rows\[(\d{1,6})\]\.(?:variables\.(\w{1,64})|(startKey))", re.ASCII)
SERVICE_ROW = re.compile(r"rows\[(\d+)\](.*)")  # a field the batch service names
ROW_PREFIX = re.compile(r"^Row \d+: ")


def read_rows(pairs: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    """The table's rows in order, from (field, value) pairs. Indices need not be contiguous
    (only their order counts); a value that is not text (a file) is left out."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in pairs:
        m = ROW_FIELD.fullmatch(key)
        if m is None or not isinstance(value, str):
            continue
        row = found.setdefault(int(m[1]), {"variables": {}, "startKey": ""})
        if m[2]:
            row["variables"][m[2]] = value
        else:
            row["startKey"] = value
    return [found[i] for i in sorted(found)]


def is_blank(row: dict[str, Any]) -> bool:
    """Nothing typed and no image of its own: not a row of the batch (static/app.js counts
    rows the same way for the price)."""
    return not row["startKey"] and not any(v.strip() for v in row["variables"].values())


def blank_rows(n: int = MIN_ROWS) -> list[dict[str, Any]]:
    return [{"variables": {}, "startKey": ""} for _ in range(n)]


def padded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return rows + blank_rows(MIN_ROWS - len(rows))


def form_state(params: Any, template: Template | None, max_rows: int) -> dict[str, Any]:
    """The mode and the batch table for a re-render of the form, from its query (a
    MultiDict). Switching to "Many variants" puts what was typed in the single form in
    row 1 (a default it showed is not typed: the row's cell shows it as a placeholder);
    switching back puts row 1 in the single form."""
    mode = "batch" if params.get("mode") == "batch" else "single"
    rows = read_rows(params.multi_items())
    defaults = {v.name: v.default or "" for v in (template.variables if template else [])}
    typed = {}
    for key, value in params.items():
        name = key.removeprefix("variables.")
        if name != key and isinstance(value, str) and value != defaults.get(name):
            typed[name] = value
    state: dict[str, Any] = {"mode": mode}
    if mode == "batch" and not rows and any(v.strip() for v in typed.values()):
        rows = [{"variables": typed, "startKey": ""}]
    if mode == "single" and rows:
        state["form_values"] = {k: v for k, v in rows[0]["variables"].items() if v.strip()}
    state["batch"] = batch_view(padded(rows), max_rows, name=str(params.get("name") or ""))
    return state


def batch_view(rows: list[dict[str, Any]], max_rows: int, *, name: str = "",
               errors: dict[str, str] | None = None, error: str | None = None,
               notice: str | None = None) -> dict[str, Any]:
    """What the macro's batch part shows: the rows, the name, the cells in error (by field
    name, e.g. `rows[2].variables.MODEL`), the message under the table, a confirmation."""
    return {"rows": rows, "name": name, "errors": errors or {}, "error": error,
            "notice": notice, "max_rows": max_rows}


def batch_body(form: Any) -> tuple[dict[str, Any], list[int]]:
    """The body for `BatchService.create` from the form post, and for each of its rows the
    index of the table row it came from. An empty cell is left out, so that an optional
    variable takes its default (and a required one is refused as missing)."""
    table = read_rows(form.multi_items())
    kept = [(t, row) for t, row in enumerate(table) if not is_blank(row)]
    rows = []
    for _, row in kept:
        out: dict[str, Any] = {"variables": {k: v for k, v in row["variables"].items()
                                             if v.strip()}}
        if row["startKey"]:
            out["startKey"] = row["startKey"]
        rows.append(out)
    name = form.get("name")
    body = {"templateSlug": form.get("templateSlug"), "startKey": form.get("startKey"),
            "rows": rows, "name": name.strip() if isinstance(name, str) and name.strip()
            else None}
    return body, [t for t, _ in kept]


def place_error(body: dict[str, Any], table_rows: list[int]) -> tuple[str | None, str]:
    """Where a refusal of the batch service belongs in the form: (the field, in the table's
    numbering, or None for the batch as a whole; the message, naming the table's row)."""
    field = body.get("field")
    message = str(body.get("message") or "")
    m = SERVICE_ROW.fullmatch(field) if isinstance(field, str) else None
    if m is None:
        return field, message
    i = int(m[1])
    t = table_rows[i] if i < len(table_rows) else i
    return f"rows[{t}]{m[2]}", f"Row {t + 1}: {ROW_PREFIX.sub('', message)}"
