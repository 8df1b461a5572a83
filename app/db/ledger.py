"""Reading a person's ledger as a history: the entries newest first, a page at a time, each
with the balance it left and, for a video's charge, the job and its template.

Entries are written with the balance change they record (app/db/users.py for sign-up and
grants, app/db/jobs.py `capture` for a video, which records the job's id); the template's
name is read from the job, so entries written before the history showed it display too."""

from __future__ import annotations

from datetime import datetime

import msgspec

from app.db.connection import Database, rid
from app.db.records import LedgerEntry, decode_all

PAGE = 25


class HistoryRow(LedgerEntry, kw_only=True):
    """A ledger entry as the history shows it. A run of one batch's charges is one row:
    `batch_name`, its charges in `entries`, the amount their sum."""
    balance_after: int = 0
    template_name: str | None = None  # these three from the entry's job, if any
    batch: str | None = None
    variables: dict[str, str] | None = None
    batch_name: str | None = None
    entries: list[HistoryRow] = msgspec.field(default_factory=list)


class History(msgspec.Struct, kw_only=True):
    rows: list[HistoryRow]
    more: bool  # there are older entries


async def history(db: Database, user_id: str, before: datetime | None = None,
                  limit: int = PAGE) -> History:
    """A page of the history, newest first. Each row's `balance_after` is counted down
    from the balance (the newest row's is the balance itself, so the column always agrees
    with the header). `before` (an entry's created_at) continues the list after that entry."""
    newer, rows = (await db.read(
        """
        LET $balance = (SELECT VALUE balance FROM ONLY $u) ?? 0;
        RETURN $balance - (IF $before = NONE THEN 0 ELSE math::sum(
            SELECT VALUE amount FROM ledger WHERE owner = $u AND created_at >= $before) END);
        SELECT *, IF job != NONE THEN type::thing("video_job", job).template_name END
            AS template_name,
            IF job != NONE THEN type::thing("video_job", job).batch END AS batch,
            IF job != NONE THEN type::thing("video_job", job).variables END AS variables
        FROM ledger WHERE owner = $u AND ($before = NONE OR created_at < $before)
        ORDER BY created_at DESC LIMIT $limit;
        """,
        {"u": rid("user", user_id), "before": before, "limit": limit + 1},
    ))[-2:]
    after = int(newer or 0)
    listed = decode_all((rows or [])[:limit], HistoryRow)
    for row in listed:
        row.balance_after = after
        after -= row.amount
    return History(rows=await _grouped(db, listed), more=len(rows or []) > limit)


async def _grouped(db: Database, rows: list[HistoryRow]) -> list[HistoryRow]:
    """Consecutive charges of one batch become one row named after the batch (`batch_name`,
    `entries`: its charges, the amount their sum, the balance the newest one's)."""
    out: list[HistoryRow] = []
    for row in rows:
        last = out[-1] if out else None
        if row.batch and last and last.batch == row.batch:
            if not last.entries:
                last.entries = [msgspec.structs.replace(last)]
            last.entries.append(row)
            last.amount += row.amount
            continue
        out.append(row)
    names: dict[str, str | None] = {r.batch: None for r in out if r.batch and r.entries}
    if names:
        found = await db.read_one("SELECT meta::id(id) AS id, name FROM $ids",
                                  {"ids": [rid("batch", b) for b in names]})
        names.update({r["id"]: r["name"] for r in found or []})
    for row in out:
        if row.batch and row.entries:
            row.batch_name = names.get(row.batch) or "A batch"
    return out
