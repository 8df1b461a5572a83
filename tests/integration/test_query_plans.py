"""The index each query of one person's jobs walks, as SurrealDB's planner says (EXPLAIN),
on the app's own schema: a query that walked the person's whole history, or everyone's
jobs in some states, would grow with the table (docs/BENCHMARKS.md §6)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from app.db import jobs as jobs_db
from app.db.connection import rid
from app.events.notifier import ACTIVE_STATUSES


async def plan(db: Any, sql: str, **vars: Any) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = await db.read_one(sql + " EXPLAIN", vars)
    return steps


def walked(steps: list[dict[str, Any]]) -> tuple[str, str]:
    """(index, how) of the plan's one index iteration: its operator ("=", "union"), or
    "range" for a prefix of equal fields and a range on the next one."""
    found = [s["detail"]["plan"] for s in steps if s["operation"] == "Iterate Index"]
    assert len(found) == 1, steps
    return found[0]["index"], found[0].get("operator") or ("range" if "ranges" in found[0]
                                                           else "?")


@pytest.mark.parametrize("before", [False, True])
@pytest.mark.parametrize("singles", [False, True])
async def test_a_status_filter_walks_only_the_persons_jobs_in_those_states(db, before, singles):
    """The notice about running jobs reads them at every job change: a range per state of
    the owner's (owner, status) index, not the owner's whole history."""
    steps = await plan(db, jobs_db.list_sql(True, before, singles),
                       owner=rid("user", "ann"), statuses=ACTIVE_STATUSES, limit=100, offset=0,
                       before=datetime.now(UTC))
    assert walked(steps) == ("job_owner_status", "union")


@pytest.mark.parametrize("before", [False, True])
async def test_a_list_of_every_state_walks_the_owners_index(db, before):
    steps = await plan(db, jobs_db.list_sql(False, before, False), owner=rid("user", "ann"),
                       statuses=None, limit=20, offset=0, before=datetime.now(UTC))
    assert walked(steps) == ("job_owner", "range" if before else "=")


async def test_a_page_opening_reads_only_the_jobs_it_has_to_announce(db):
    """Each open page's stream asks for the jobs that ended while nobody watched: the
    person's unannounced jobs, not every job they ever made."""
    steps = await plan(db, jobs_db.UNANNOUNCED_SQL, owner=rid("user", "ann"),
                       final=["completed", "failed", "canceled"])
    index, how = walked(steps)
    assert (index, how) == ("job_unannounced", "=")
    value = [s["detail"]["plan"]["value"] for s in steps if s["operation"] == "Iterate Index"]
    assert value[0][1] is False  # the range of the unannounced, not the whole index
