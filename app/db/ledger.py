"""Reading a person's ledger as a history: the entries newest first, a page at a time, each
with the balance it left and, for a video's charge, the job and its template.

Entries are written with the balance change they record (app/db/users.py for sign-up and
grants, app/db/jobs.py `capture` for a video, which records the job's id); the template's
name is read from the job, so entries written before the history showed it display too."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.db.connection import Database, rid

PAGE = 25


async def history(db: Database, user_id: str, before: datetime | None = None,
                  limit: int = PAGE) -> dict[str, Any]:
    """{"rows": [...], "more": bool}. Each row is a ledger entry plus `balance_after`
    (counted down from the balance: the newest row's is the balance itself, so the
    column always agrees with the header) and `template_name` for a job's entry.
    `before` (an entry's created_at) continues the list after that entry."""
    newer, rows = (await db.read(
        """
        LET $balance = (SELECT VALUE balance FROM ONLY $u) ?? 0;
        RETURN $balance - (IF $before = NONE THEN 0 ELSE math::sum(
            SELECT VALUE amount FROM ledger WHERE owner = $u AND created_at >= $before) END);
        SELECT *, IF job != NONE THEN type::thing("video_job", job).template_name END
            AS template_name
        FROM ledger WHERE owner = $u AND ($before = NONE OR created_at < $before)
        ORDER BY created_at DESC LIMIT $limit;
        """,
        {"u": rid("user", user_id), "before": before, "limit": limit + 1},
    ))[-2:]
    after = int(newer or 0)
    listed = []
    for row in (rows or [])[:limit]:
        listed.append({**row, "balance_after": after})
        after -= int(row["amount"])
    return {"rows": listed, "more": len(rows or []) > limit}
