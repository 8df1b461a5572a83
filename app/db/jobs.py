"""Queries on video jobs. Every write that changes a job's status goes through
`transition`, a conditional `UPDATE … WHERE status IN …` (compare-and-set) that also moves
the owner's credits in the same transaction. app/jobs/service.py decides which moves are
allowed; this module only makes them atomic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal, overload

from app.db.connection import Database, Thrown, rid
from app.db.records import DueJob, JobEvent, NewJob, VideoJob, decode, decode_all, plain
from app.jobs.fairness import pick

CreditEffect = Literal["release", "capture"] | None

# A batch's jobs were never counted in active_jobs (the cap on single submissions).
_CREDITS = {
    None: "",
    "release": """UPDATE $owner SET reserved -= $job.credits,
                  active_jobs -= IF $job.batch = NONE THEN 1 ELSE 0 END;""",
    # Capturing charges the balance, frees the reservation, files the video in the library
    # (`$library`, as the job's owner's) and writes the ledger entry; the fixed ids make a
    # repeat impossible, not just unlikely.
    "capture": """
        UPDATE $owner SET balance -= $job.credits, reserved -= $job.credits,
            active_jobs -= IF $job.batch = NONE THEN 1 ELSE 0 END;
        CREATE type::thing("ledger", "capture-" + $id) CONTENT {
            owner: $owner, amount: -$job.credits, reason: "video", job: $id
        };
        CREATE type::thing("library", $id) CONTENT object::from_entries(
            array::concat(object::entries($library), [["owner", $owner]]));
    """,
}


async def create(
    db: Database, job_id: str, owner_id: str, job: NewJob, cap: int, *,
    retry_of: str | None = None, idempotency: dict[str, Any] | None = None,
) -> VideoJob:
    """Record a job and reserve its credits atomically.
    With `retry_of`, the original job (failed or canceled, and not retried yet) is marked
    `retried_as` this one in the same transaction: one retry per job, however many race.
    With `idempotency` ({"key", "fingerprint", "status", "body", "ttl"}), the key's record
    is written in the same transaction, unless the key is in use: one job per key.
    Raises Thrown("insufficient_credits"), Thrown("too_many_active_jobs"),
    Thrown("already_retried") or Thrown("idempotency_key_used")."""
    result = await db.write(
        """
        BEGIN;
        IF $retry_of != NONE {
            LET $orig = (UPDATE $retry_of SET retried_as = $id
                         WHERE retried_as = NONE AND status IN ["failed", "canceled"]
                         RETURN AFTER)[0];
            IF $orig = NONE { THROW "already_retried" };
        };
        IF $idem != NONE {
            LET $until = (SELECT VALUE expires_at FROM ONLY $idem_id);
            IF $until != NONE AND $until > time::now() { THROW "idempotency_key_used" };
            UPSERT $idem_id CONTENT {
                owner: $owner, fingerprint: $idem.fingerprint, status: $idem.status,
                body: $idem.body, job: $id, created_at: time::now(),
                expires_at: time::now() + type::duration($idem.ttl)
            };
        };
        LET $u = (SELECT balance, reserved, active_jobs FROM ONLY $owner);
        IF $u.balance - $u.reserved < $job.credits { THROW "insufficient_credits" };
        IF $u.active_jobs >= $cap { THROW "too_many_active_jobs" };
        UPDATE $owner SET reserved += $job.credits, active_jobs += 1;
        LET $created = (CREATE ONLY $jid CONTENT $job);
        CREATE job_event CONTENT { job: $id, to: $job.status, reason: "submitted" };
        RETURN $created;
        COMMIT;
        """,
        {"owner": rid("user", owner_id), "jid": rid("video_job", job_id), "id": job_id,
         "job": {**job.content(), "owner": rid("user", owner_id),
                 **({"retry_of": retry_of} if retry_of else {})},
         "cap": cap, "retry_of": rid("video_job", retry_of) if retry_of else None,
         "idem": idempotency,
         "idem_id": rid("idempotency_key", [owner_id, idempotency["key"]])
         if idempotency else None},
    )
    created: dict[str, Any] = result[-1]
    return decode(created, VideoJob)


@overload
async def transition(
    db: Database, job_id: str, to: str, sources: list[str],
    fields: dict[str, object] | None = None, *, reason: str | None = None,
    lease: str | None = None, credits: CreditEffect = None,
    library: dict[str, object] | None = None, with_previous: Literal[False] = False,
    unrendered: bool = False,
) -> VideoJob | None: ...
@overload
async def transition(
    db: Database, job_id: str, to: str, sources: list[str],
    fields: dict[str, object] | None = None, *, reason: str | None = None,
    lease: str | None = None, credits: CreditEffect = None,
    library: dict[str, object] | None = None, with_previous: Literal[True],
    unrendered: bool = False,
) -> tuple[VideoJob | None, str | None]: ...
async def transition(
    db: Database,
    job_id: str,
    to: str,
    sources: list[str],
    fields: dict[str, object] | None = None,
    *,
    reason: str | None = None,
    lease: str | None = None,
    credits: CreditEffect = None,
    library: dict[str, object] | None = None,
    with_previous: bool = False,
    unrendered: bool = False,
) -> VideoJob | None | tuple[VideoJob | None, str | None]:
    """Move a job to `to` if it is in one of `sources` (and, with `lease`, still leased by
    that driver; with `unrendered`, only while no webhook has said the provider finished).
    Returns the job after the move, or None when the guard refused it; with
    `with_previous`, a pair (job or None, the status it had before the move or None)."""
    guard = ("status IN $sources" + (" AND lease_owner = $lease" if lease else "")
             + (" AND provider_done != true" if unrendered else ""))
    try:
        result = await db.write(
            f"""
            BEGIN;
            LET $before = (SELECT VALUE status FROM ONLY $jid);
            LET $job = (UPDATE $jid MERGE $fields WHERE {guard} RETURN AFTER)[0];
            IF $job = NONE {{ THROW "transition_refused" }};
            LET $owner = $job.owner;
            {_CREDITS[credits]}
            IF $before != $to OR $reason != NONE {{
                CREATE job_event CONTENT {{ job: $id, from: $before, to: $to, reason: $reason }};
            }};
            RETURN {{ job: $job, before: $before }};
            COMMIT;
            """,  # noqa: S608 - only fixed fragments are interpolated
            {"jid": rid("video_job", job_id), "id": job_id, "to": to, "sources": sources,
             "lease": lease, "reason": reason, "library": library,
             "fields": {**(fields or {}), "status": to, "updated_at": _now()}},
        )
    except Thrown as exc:
        if exc.code == "transition_refused":
            return (None, None) if with_previous else None
        raise
    out = result[-1]
    row: dict[str, Any] | None = out["job"]
    job = decode(row, VideoJob)
    return (job, out.get("before")) if with_previous else job


def _now() -> datetime:
    return datetime.now(UTC)


async def update(db: Database, job_id: str, fields: dict[str, object],
                 lease: str) -> VideoJob | None:
    """Change non-status fields of a job this driver holds: the job after it, or None
    when the driver no longer holds it."""
    rows = await db.write_one(
        "UPDATE $jid MERGE $fields WHERE lease_owner = $lease RETURN AFTER",
        {"jid": rid("video_job", job_id), "lease": lease,
         "fields": {**fields, "updated_at": _now()}},
    )
    return decode(rows[0], VideoJob) if rows else None


async def get(db: Database, job_id: str) -> VideoJob | None:
    row: dict[str, Any] | None = await db.read_one(
        "SELECT * FROM ONLY $jid", {"jid": rid("video_job", job_id)})
    return decode(row, VideoJob)


async def get_owned(db: Database, job_id: str, owner_id: str) -> VideoJob | None:
    job = await get(db, job_id)
    if job is None or job.owner_id != owner_id:
        return None
    return job


# Queries of one person's jobs name the index to walk: SurrealDB's planner otherwise picks
# job_status for a `status IN …` condition and reads every person's jobs in those states
# (found by the soak, docs/RELIABILITY.md). Without a status, the owner's index; with one,
# the owner's jobs in those states only (job_owner_status, one range per state): the owner's
# index would read all of the person's history to find the few running ones (45 ms at 2,000
# jobs against 0.6 ms), and the notice about running jobs reads them at every job change.
OWNER_INDEX = "WITH INDEX job_owner"
OWNER_STATUS_INDEX = "WITH INDEX job_owner_status"


def list_sql(statuses: bool, before: bool, singles: bool) -> str:
    """The query behind `list_for` (EXPLAINed by tests/integration/test_query_plans.py)."""
    where = ("owner = $owner" + (" AND status IN $statuses" if statuses else "")
             + (" AND created_at < $before" if before else "")
             + (" AND batch = NONE" if singles else ""))
    index = OWNER_STATUS_INDEX if statuses else OWNER_INDEX
    return (f"SELECT * FROM video_job {index} WHERE {where} "  # noqa: S608 - constants only
            "ORDER BY created_at DESC LIMIT $limit START $offset")


async def list_for(
    db: Database, owner_id: str, statuses: list[str] | None = None,
    limit: int = 20, offset: int = 0, before: datetime | None = None, singles: bool = False,
) -> list[VideoJob]:
    """Newest first. `before` (a created_at) pages by cursor: jobs created since the first
    page was read do not shift the next page, as an offset would. `singles`: leave out
    batches' rows (lists that show each batch as one card)."""
    return decode_all(await db.read_one(
        list_sql(bool(statuses), before is not None, singles),
        {"owner": rid("user", owner_id), "statuses": statuses, "limit": limit, "offset": offset,
         "before": before},
    ), VideoJob)


_DUE_ONE_STATUS = """
    SELECT id, due_at FROM (
        SELECT id, due_at, lease_until, lease_owner FROM video_job
        WHERE status = $status_{i} AND due_at <= time::now()
    ) WHERE lease_until = NONE OR lease_until < time::now() OR lease_owner = $me
    ORDER BY due_at LIMIT $limit;
"""


PENDING_WINDOW = 1000  # the longest-waiting pending jobs that fair picking looks at
_PENDING = """
    SELECT id, due_at, owner, batch, lease_until, lease_owner FROM video_job
    WHERE status = "pending" AND due_at <= time::now() ORDER BY due_at LIMIT $window;
"""
_RUNNING = """
    SELECT owner, count() AS n FROM video_job WITH INDEX job_status
    WHERE status = $status_{i} AND owner IN $owners GROUP BY owner;
"""


async def due(db: Database, active: list[str], limit: int, me: str = "",
              cap: int | None = None) -> list[str]:
    """Ids of active jobs whose next step is due and whose lease is free, expired or held
    by driver `me` (a render running in its process), the longest due first.

    One range scan of the job_status index (status, due_at) per status: SurrealDB plans
    `status IN [...]`, or an OR beside it in the same WHERE, as a scan of the whole table,
    which grows with every job ever made (~0.1 s per claim round at 2,000 jobs). The lease
    test runs on the (few) due rows in an outer SELECT so it cannot spoil the plan."""
    if cap is not None and "pending" in active:
        return await _due_fairly(db, active, limit, me, cap)
    statuses = list(active)
    rows = [
        row
        for result in await db.read(
            "".join(_DUE_ONE_STATUS.format(i=i) for i in range(len(statuses))),
            {"limit": limit, "me": me,
             **{f"status_{i}": s for i, s in enumerate(statuses)}},
        )
        for row in result or []
    ]
    rows.sort(key=lambda r: r["due_at"])
    return [str(r["id"].id) for r in rows[:limit]]


async def _due_fairly(db: Database, active: list[str], limit: int, me: str,
                      cap: int) -> list[str]:
    """`due`, with pending jobs chosen fairly between people (app/jobs/fairness.py): at
    most `cap` running per person, whoever has fewest running first. Pending jobs go first
    (their share is at most `cap` per person); due checks of started jobs fill the rest."""
    started = [s for s in active if s != "pending"]
    pending = decode_all(await db.read_one(_PENDING, {"window": PENDING_WINDOW}), DueJob)
    now = _now()
    free: list[DueJob] = []
    busy: dict[str, int] = {}
    for job in pending:
        if job.lease_until is not None and job.lease_until > now:
            # being submitted by a driver: it holds a slot already
            busy[job.owner_id] = busy.get(job.owner_id, 0) + 1
        else:
            free.append(job)
    running = dict(busy)
    owners = [rid("user", o) for o in dict.fromkeys(job.owner_id for job in free)]
    if owners and started:
        for result in await db.read(
                "".join(_RUNNING.format(i=i) for i in range(len(started))),
                {"owners": owners, **{f"status_{i}": s for i, s in enumerate(started)}}):
            for row in plain(result) or []:
                running[row["owner"]] = running.get(row["owner"], 0) + row["n"]
    chosen = [job.id for job in pick(free, running, cap, limit)]
    if len(chosen) < limit and started:
        chosen += await due(db, started, limit - len(chosen), me)
    return chosen


async def claim_many(
    db: Database, job_ids: list[str], owner: str, ttl_s: float, active: list[str]
) -> list[VideoJob]:
    """`claim` for several jobs in one statement: the WHERE is checked for each record on
    its own, so the jobs returned are exactly those this driver won (one round trip and one
    parse instead of one per job)."""
    if not job_ids:
        return []
    rows = await db.write_one(
        """
        UPDATE $jids SET lease_owner = $owner,
            lease_until = time::now() + type::duration($ttl)
        WHERE status IN $active
            AND (lease_until = NONE OR lease_until < time::now() OR lease_owner = $owner)
        RETURN AFTER
        """,
        {"jids": [rid("video_job", j) for j in job_ids], "owner": owner,
         "ttl": _ms(ttl_s), "active": active},
    )
    order = {j: i for i, j in enumerate(job_ids)}
    return sorted(decode_all(rows, VideoJob), key=lambda j: order.get(j.id, len(order)))


async def release(db: Database, job_id: str, owner: str, due_in_s: float | None,
                  keep_for_s: float | None = None, *, checks: int | None = None,
                  attempts: int | None = None) -> None:
    """Give the lease back and say when the job is next due. With `keep_for_s`, keep it
    instead (for that long, renewed while held): the job's render runs in this process.
    `checks` and `attempts`, when given, are written in the same update: a step that
    changed nothing else costs this one write."""
    await db.write(
        """
        UPDATE $jid SET
            lease_owner = IF $keep = NONE THEN NONE ELSE lease_owner END,
            lease_until = IF $keep = NONE THEN NONE
                          ELSE time::now() + type::duration($keep) END,
            due_at = IF $due = NONE THEN due_at ELSE time::now() + type::duration($due) END,
            checks = $checks ?? checks, attempts = $attempts ?? attempts
        WHERE lease_owner = $owner RETURN NONE
        """,  # RETURN NONE: nobody reads the record back (decoding it is most of the cost)
        {"jid": rid("video_job", job_id), "owner": owner, "keep": _ms(keep_for_s),
         "due": _ms(due_in_s), "checks": checks, "attempts": attempts},
    )


def released(due_in_s: float) -> dict[str, Any]:
    """Fields that hand a job's lease back and make it due in `due_in_s`, for a step to
    merge into its last write (a transition) instead of releasing in a write of its own.
    The due time is this process's clock, as a new job's is (app/jobs/service.py)."""
    return {"lease_owner": None, "lease_until": None,
            "due_at": datetime.now(UTC) + timedelta(seconds=max(0.0, due_in_s))}


async def renew(db: Database, job_ids: list[str], owner: str, ttl_s: float) -> list[str]:
    """Extend this driver's leases on `job_ids`; returns the ids it still holds."""
    if not job_ids:
        return []
    rows = await db.write_one(
        "UPDATE $jids SET lease_until = time::now() + type::duration($ttl) "
        "WHERE lease_owner = $owner RETURN VALUE meta::id(id)",
        {"jids": [rid("video_job", j) for j in job_ids], "owner": owner, "ttl": _ms(ttl_s)},
    )
    return [str(r) for r in rows or []]


def _ms(seconds: float | None) -> str | None:
    return None if seconds is None else f"{max(0, int(seconds * 1000))}ms"


async def release_all(db: Database, owner: str) -> None:
    await db.write(
        "UPDATE video_job SET lease_owner = NONE, lease_until = NONE WHERE lease_owner = $owner",
        {"owner": owner},
    )


async def by_request_id(db: Database, request_id: str) -> VideoJob | None:
    rows = await db.read_one(
        "SELECT * FROM video_job WHERE provider_request_id = $r LIMIT 1", {"r": request_id}
    )
    return decode(rows[0], VideoJob) if rows else None


async def accept_webhook(
    db: Database, request_id: str, job_id: str, active: list[str], keep_s: float, note: str
) -> str | None:
    """A verified webhook from fal for `request_id` (the job `job_id`): remember it for
    `keep_s` and, if the job is still active, make it due now (once) and note `note` in its
    timeline, all in one transaction. Returns the job's status, or raises
    Thrown("webhook_replayed") when the same request id was accepted within `keep_s`,
    by this process or any other."""
    result = await db.write(
        """
        BEGIN;
        LET $until = (SELECT VALUE expires_at FROM ONLY $hook);
        IF $until != NONE AND $until > time::now() { THROW "webhook_replayed" };
        UPSERT $hook CONTENT {
            job: $id, at: time::now(), expires_at: time::now() + type::duration($keep)
        };
        LET $status = (SELECT VALUE status FROM ONLY $jid);
        IF $status IN $active {
            UPDATE $jid SET provider_done = true, due_at = time::now()
                WHERE provider_done = false RETURN NONE;
            CREATE job_event CONTENT { job: $id, from: $status, to: $status, reason: $note };
        };
        RETURN $status;
        COMMIT;
        """,
        {"hook": rid("webhook_seen", request_id), "jid": rid("video_job", job_id),
         "id": job_id, "active": active, "keep": _ms(keep_s), "note": note},
    )
    status: str | None = result[-1]
    return status


# Run at every stream connect (each open page): the person's jobs not yet announced, by
# their own index. The owner's index read every job the person ever made (38 ms at 2,000);
# before it, every finished job in the system (300 ms at 10,000 jobs).
UNANNOUNCED_SQL = ("SELECT * FROM video_job WITH INDEX job_unannounced "
                   "WHERE owner = $owner AND announced = false AND status IN $final")


async def unannounced(db: Database, owner_id: str, final: list[str]) -> list[VideoJob]:
    return decode_all(await db.read_one(
        UNANNOUNCED_SQL, {"owner": rid("user", owner_id), "final": final}), VideoJob)


async def mark_announced(db: Database, job_ids: list[str]) -> None:
    if job_ids:
        await db.write(
            "UPDATE $ids SET announced = true",
            {"ids": [rid("video_job", j) for j in job_ids]},
        )


async def timeline(db: Database, job_id: str) -> list[JobEvent]:
    return decode_all(await db.read_one(
        "SELECT * FROM job_event WHERE job = $id ORDER BY at", {"id": job_id}
    ), JobEvent)


# -- operations (admin pages, CLI, metrics) ------------------------------------------------


async def count_by_status(db: Database) -> dict[str, int]:
    rows = await db.read_one("SELECT status, count() AS n FROM video_job GROUP BY status")
    return {row["status"]: int(row["n"]) for row in rows or []}


async def list_all(
    db: Database, *, statuses: list[str] | None = None, template: str | None = None,
    owner_id: str | None = None, limit: int = 50, offset: int = 0,
) -> list[VideoJob]:
    """Everyone's jobs, newest first, each with `owner_email`."""
    conditions = []
    if statuses:
        conditions.append("status IN $statuses")
    if template:
        conditions.append("template = $template")
    if owner_id:
        conditions.append("owner = $owner")
    where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
    return decode_all(await db.read_one(
        f"SELECT *, owner.email AS owner_email FROM video_job{where} "  # noqa: S608
        "ORDER BY created_at DESC LIMIT $limit START $offset",
        {"statuses": statuses, "template": template, "limit": limit, "offset": offset,
         "owner": rid("user", owner_id) if owner_id else None},
    ), VideoJob)


async def release_lease(db: Database, job_id: str, active: list[str],
                        reason: str) -> VideoJob | None:
    """Clear an active job's lease and make it due now (for a driver that is stuck, not
    dead: a dead one's lease simply expires). Noted in the job's timeline."""
    result = await db.write(
        """
        BEGIN;
        LET $job = (UPDATE $jid SET lease_owner = NONE, lease_until = NONE, due_at = time::now()
                    WHERE status IN $active AND lease_owner != NONE RETURN AFTER)[0];
        IF $job != NONE {
            CREATE job_event CONTENT { job: $id, from: $job.status, to: $job.status,
                                       reason: $reason };
        };
        RETURN $job;
        COMMIT;
        """,
        {"jid": rid("video_job", job_id), "id": job_id, "active": active, "reason": reason},
    )
    released: dict[str, Any] | None = result[-1]
    return decode(released, VideoJob)


__all__ = ["Thrown"]


async def recent_durations(db: Database, template: str, provider: str,
                           limit: int = 50) -> list[float]:
    """Seconds from creation to finish of the last `limit` completed jobs of a template and
    provider, newest first (walks the job_history index: equality prefix, then finished_at)."""
    rows = await db.read_one(
        "SELECT created_at, finished_at FROM video_job WITH INDEX job_history "
        "WHERE template = $t AND provider = $p AND status = 'completed' "
        "ORDER BY finished_at DESC LIMIT $n",
        {"t": template, "p": provider, "n": limit},
    )
    return [(r["finished_at"] - r["created_at"]).total_seconds() for r in rows
            if r.get("finished_at") and r.get("created_at")]


# -- retention --------------------------------------------------------------------------

PRUNE_BATCH = 500  # timeline rows looked at per transaction: writes are held only briefly


async def prune_timelines(db: Database, older_than_seconds: float) -> int:
    """Delete the detailed timelines (job_event rows) of jobs that ended more than
    `older_than_seconds` ago, oldest first, in small transactions. The jobs themselves and
    their ledger entries stay. Returns how many jobs lost their timeline."""
    pruned = 0
    while True:
        done = await db.write_one(
            """
            BEGIN;
            LET $cutoff = time::now() - type::duration($age);
            LET $old = array::distinct(
                (SELECT job, at FROM job_event WHERE at < $cutoff ORDER BY at LIMIT $n).job);
            -- Only ended jobs, and every event of each (none straddles the cutoff half-kept).
            LET $ended = (SELECT VALUE record::id(id)
                          FROM array::map($old, |$j| type::thing("video_job", $j))
                          WHERE status IN $final AND finished_at < $cutoff);
            FOR $j IN $ended { DELETE job_event WHERE job = $j; };
            RETURN $ended;
            COMMIT;
            """,
            {"age": f"{max(0, int(older_than_seconds))}s", "n": PRUNE_BATCH,
             "final": ["completed", "failed", "canceled"]},
        )
        if not done:
            return pruned
        pruned += len(done)
