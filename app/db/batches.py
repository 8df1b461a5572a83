"""Queries on batches: one template and many rows, each row a normal video job. Recording a
batch, and retrying its failed rows, are each one transaction that reserves every row's
credits or none (app/jobs/batches.py decides what goes in)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.db.connection import Database, rid
from app.db.records import Batch, NewJob, RunningBatch, VideoJob, decode, decode_all

# The first statements of both transactions below: the credits of every row, or a THROW.
_RESERVE = """
    LET $u = (SELECT balance, reserved FROM ONLY $owner);
    IF $u.balance - $u.reserved < $total { THROW "insufficient_credits" };
    UPDATE $owner SET reserved += $total;
"""


async def create(db: Database, batch_id: str, owner_id: str, *, name: str,
                 template: str, template_name: str, start_key: str, created_at: datetime,
                 jobs: list[tuple[str, NewJob]]) -> Batch:
    """Record the batch and its jobs, reserving the credits of all of them, or nothing.
    Raises Thrown("insufficient_credits")."""
    owner = rid("user", owner_id)
    result = await db.write(
        "BEGIN;" + _RESERVE + """
        LET $made = (CREATE ONLY $bid CONTENT $batch);
        FOR $j IN $jobs {
            CREATE type::thing("video_job", $j.id) CONTENT $j.job;
            CREATE job_event CONTENT { job: $j.id, to: "pending", reason: "submitted in a batch" };
        };
        RETURN $made;
        COMMIT;
        """,  # noqa: S608 - only fixed text is joined
        {"owner": owner, "bid": rid("batch", batch_id),
         "total": sum(job.credits for _, job in jobs),
         "batch": {"name": name, "template": template, "template_name": template_name,
                   "start_key": start_key, "created_at": created_at, "owner": owner,
                   "jobs": [job_id for job_id, _ in jobs]},
         "jobs": [{"id": job_id, "job": {**job.content(), "owner": owner, "batch": batch_id}}
                  for job_id, job in jobs]},
    )
    made: dict[str, Any] = result[-1]
    return decode(made, Batch)


async def get_owned(db: Database, batch_id: str, owner_id: str) -> Batch | None:
    rows = await db.read_one("SELECT * FROM $bid WHERE owner = $owner",
                             {"bid": rid("batch", batch_id), "owner": rid("user", owner_id)})
    return decode(rows[0], Batch) if rows else None


async def list_for(db: Database, owner_id: str, limit: int = 20, offset: int = 0,
                   before: datetime | None = None) -> list[Batch]:
    """Newest first; `before` (a created_at) pages by cursor, as jobs do."""
    return decode_all(await db.read_one(
        "SELECT * FROM batch WHERE owner = $owner AND ($before = NONE OR created_at < $before) "
        "ORDER BY created_at DESC LIMIT $limit START $offset",
        {"owner": rid("user", owner_id), "limit": limit, "offset": offset, "before": before}),
        Batch)


async def running(db: Database, batch_ids: list[str]) -> list[RunningBatch]:
    """These batches' names and sizes, oldest first (one read of the batch records, not of
    their rows); `left` is the caller's to count."""
    if not batch_ids:
        return []
    return decode_all(await db.read_one(
        "SELECT id, name, array::len(jobs) AS total, created_at FROM $ids "
        "ORDER BY created_at", {"ids": [rid("batch", b) for b in batch_ids]}), RunningBatch)


async def jobs_of(db: Database, batches: list[Batch]) -> dict[str, VideoJob]:
    """Every job of these batches, by job id (one read for all of them)."""
    ids = [rid("video_job", j) for b in batches for j in b.jobs]
    if not ids:
        return {}
    rows = await db.read_one("SELECT * FROM $ids", {"ids": ids})
    return {job.id: job for job in decode_all(rows, VideoJob)}


async def retry_rows(db: Database, batch_id: str, owner_id: str,
                     retries: list[tuple[str, str, NewJob]]) -> list[VideoJob]:
    """For each (failed job, its retry's id, the retry's record): record the retry in the
    failed job's row, once. All or nothing: a row another call retried first, or credits
    that don't fit, throw ("already_retried", "insufficient_credits")."""
    owner = rid("user", owner_id)
    result = await db.write(
        "BEGIN;" + _RESERVE + """
        LET $rows = (SELECT VALUE jobs FROM ONLY $bid);
        FOR $r IN $retries {
            LET $orig = (UPDATE type::thing("video_job", $r.of) SET retried_as = $r.id
                         WHERE retried_as = NONE AND status = "failed" RETURN AFTER)[0];
            IF $orig = NONE { THROW "already_retried" };
            CREATE type::thing("video_job", $r.id) CONTENT $r.job;
            CREATE job_event CONTENT { job: $r.id, to: "pending",
                                       reason: "retry of a failed batch row" };
        };
        LET $swap = object::from_entries($retries.map(|$r| [$r.of, $r.id]));
        -- (closures see no LET variables: a SELECT over the list does the swap)
        UPDATE $bid SET jobs = (SELECT VALUE (IF $swap[$this] THEN $swap[$this] ELSE $this END)
                                FROM $rows);
        RETURN (SELECT * FROM $ids);
        COMMIT;
        """,  # noqa: S608 - only fixed text is joined
        {"owner": owner, "bid": rid("batch", batch_id),
         "total": sum(job.credits for _, _, job in retries),
         "retries": [{"of": of, "id": new_id,
                      "job": {**job.content(), "owner": owner, "batch": batch_id,
                              "retry_of": of}}
                     for of, new_id, job in retries],
         "ids": [rid("video_job", new_id) for _, new_id, _ in retries]},
    )
    return decode_all(result[-1], VideoJob)


