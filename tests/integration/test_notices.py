"""The server's side of the calm notices (issue 12): the work-in-progress notice counts the
person's running jobs from the database wherever it is rendered (the Generate answer, the
stream), and what ended while nobody watched is summed up in one toast, once."""

from __future__ import annotations

import re

from tests.helpers import Account
from tests.integration.api_support import in_app, running_app, user_id

FORM = {"templateSlug": "food-close-up", "variables.DISH": "Ramen"}
HX = {"hx-request": "true"}


async def test_the_generate_answer_counts_every_running_job(settings):
    async with running_app(settings, idle=True) as client:  # jobs stay pending
        alice = await Account.signup(client, "alice@example.com")
        key = await alice.upload()
        first = await alice.post("/api/templates/video", headers=HX,
                                 data={**FORM, "startKey": key})
        assert first.status_code == 202
        assert 'id="toast-progress"' in first.text and "Generating video…" in first.text
        await alice.submit(key)  # another one, through the JSON API
        third = await alice.post("/api/templates/video", headers=HX,
                                 data={**FORM, "startKey": key})
        assert third.status_code == 202
        assert third.text.count('id="toast-progress"') == 1
        assert "3 videos generating" in third.text and "3 starting" in third.text
        assert not re.search(r'id="toast-[0-9a-f]{32}"', third.text)  # no toast of one job


async def test_jobs_that_ended_away_are_summed_up_once(settings):
    async with running_app(settings, idle=True) as client:
        alice = await Account.signup(client, "alice@example.com")
        key = await alice.upload()
        ids = [(await alice.submit(key)).json()["jobId"] for _ in range(3)]
        for job_id in ids[:2]:  # ended while no page was open
            r = await alice.post(f"/api/templates/video/cancel?jobId={job_id}")
            assert r.status_code == 200, r.text
        notifier = client.app.state.services.notifier
        uid = user_id(client, alice.email)
        events = in_app(client, notifier.snapshot, uid)
        names = [e.event for e in events]
        # every card, oldest first (the page files each by its age), the notice of the one
        # still running, the balance, and one toast for both that ended
        assert names == ["jobs", "jobs", "jobs", "toast-progress", "credits", "toasts"], names
        assert [ids.index(next(i for i in ids if i in e.data)) for e in events[:3]] == [0, 1, 2]
        # to the millisecond: jobs made in the same second still sort by it in the page
        created = [float(re.search(r'data-created="(\d+\.\d{3})"', e.data)[1])
                   for e in events[:3]]
        assert created == sorted(created) and len(set(created)) == 3, created
        assert "Generating video…" in events[3].data
        summary = events[-1].data
        assert 'id="toast-away"' in summary and "2 videos canceled" in summary
        assert 'href="/jobs?status=canceled"' in summary
        # announced once
        again = [e.event for e in in_app(client, notifier.snapshot, uid)]
        assert "toasts" not in again and again.count("jobs") == 1, again
