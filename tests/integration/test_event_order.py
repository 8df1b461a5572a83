"""A change can reach a process twice (its own write, then the change feed) and out of order
(another process's older write after this one's newer). The notifier sends a job's state
only when it is newer (the database's `rev`) and shows something new."""

from __future__ import annotations

from msgspec.structs import replace

from app.db import jobs as jobs_db
from app.db.records import VideoJob
from app.jobs.states import Status
from tests.helpers import on_app


async def test_a_stale_or_repeated_job_state_is_not_sent(client, alice, services):
    key = await alice.upload()
    job_id = (await alice.submit(key)).json()["jobId"]
    await alice.wait_status(job_id)
    job = await jobs_db.get(services.db, job_id)
    user_id = job.owner_id

    async def deliveries(states: list[VideoJob]) -> list[str]:
        sub = services.broker.subscribe(user_id)
        try:
            for state in states:
                await services.notifier.publish("job", state)
            return [e.event for e in sub.get_nowait()]
        finally:
            services.broker.unsubscribe(sub)

    newest = replace(job, rev=100)
    older = replace(job, rev=99, status=Status.PROCESSING, last_log="Rendering 40%")
    same_look = replace(job, rev=101)  # a lease or bookkeeping write: nothing new to see
    newer = replace(job, rev=102, error="shown")
    sent = on_app(client, deliveries, [newest, older, newest, same_look, newer])
    # `newest` (the first this process sends of the job: a new card, an upsert in the
    # page, with the toast of its end), then `newer` (its end is not toasted again), each
    # with the notice about work in progress; never `older`, and nothing for a repeat or
    # a bookkeeping write
    assert sent == ["jobs", "toast-progress", "toasts", f"job-{job_id}", "toast-progress"], sent
