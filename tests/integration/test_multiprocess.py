"""Three `serve` processes against one SurrealDB server (the stand-in in tests/fakes, or a
real server through SURREALDB_TEST_URL), sharing a data directory as processes on one
machine do (local storage and the local renderer). Every guarantee must hold across them:
events reach every process's streams, credits hold under concurrent submissions, a job
whose process is killed or stopped completes once elsewhere, and a session or a login
limit is the same on every process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.db.connection import Database
from app.settings import Settings
from tests.crashkit import ServerProcess
from tests.fakes.live_server import EventReader
from tests.helpers import Account, png_bytes

PRICE = 80  # car-commercial
LEASE = "3"  # seconds: a killed process's jobs are taken over quickly


class Cluster:
    def __init__(self, url: str, db_name: str, data_dir: Path, **env: str):
        self.settings = Settings(database_url=url, surrealdb_user="root",
                                 surrealdb_pass="root", surrealdb_db=db_name,
                                 data_dir=data_dir)
        self.env = {"DATABASE_URL": url, "SURREALDB_USER": "root", "SURREALDB_PASS": "root",
                    "SURREALDB_DB": db_name, "SECRET_KEY": "multi-process-secret",
                    "VIDEO_PROVIDER": "local", "STORAGE": "local", "LEASE_SECONDS": LEASE,
                    "MAX_ACTIVE_JOBS": "100", "SIGNUP_CREDITS": "1000", **env}
        self.data_dir = data_dir
        self.servers: list[ServerProcess] = []

    def start(self, n: int, crash_at: str | None = None, **extra: str) -> list[ServerProcess]:
        started = [ServerProcess(self.data_dir, {**self.env, **extra}) for _ in range(n)]
        for server in started:
            server.start(crash_at)
        self.servers += started
        return started

    def stop_all(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()
            server.kill()

    async def db(self) -> Database:
        db = Database(self.settings)
        await db.connect()
        return db

    async def books(self, email: str) -> dict:
        """What the database says about one person: balance, holds, charges, videos."""
        db = await self.db()
        try:
            rows = await db.read("""
                LET $u = (SELECT * FROM ONLY user WHERE email = $email LIMIT 1);
                RETURN {
                    balance: $u.balance, reserved: $u.reserved, active: $u.active_jobs,
                    ledger: math::sum(SELECT VALUE amount FROM ledger WHERE owner = $u.id),
                    charges: (SELECT VALUE job FROM ledger
                              WHERE owner = $u.id AND reason = 'video'),
                    videos: (SELECT VALUE job FROM library
                             WHERE owner = $u.id AND kind = 'video'),
                    jobs: (SELECT VALUE [meta::id(id), status, error] FROM video_job
                           WHERE owner = $u.id),
                };""", {"email": email})
            return rows[-1]
        finally:
            await db.close()


@pytest.fixture
def cluster(surreal_server_url, surreal_db_name, tmp_path) -> Iterator[Cluster]:
    c = Cluster(surreal_server_url, surreal_db_name, tmp_path)
    try:
        yield c
    finally:
        c.stop_all()


@contextlib.asynccontextmanager
async def client(url: str):
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        yield c


def share_cookies(source: httpx.AsyncClient, *targets: httpx.AsyncClient) -> None:
    for target in targets:
        for name, value in source.cookies.items():
            target.cookies.set(name, value)


async def open_stream(c: httpx.AsyncClient, stack: contextlib.AsyncExitStack) -> EventReader:
    response = await stack.enter_async_context(c.stream(
        "GET", "/events", headers={"accept": "text/event-stream"},
        timeout=httpx.Timeout(10, read=None)))
    assert response.status_code == 200
    return EventReader(response)


async def wait_final(account: Account, job_ids: list[str], timeout: float = 90) -> dict:
    final = {}
    for job_id in job_ids:
        body = await account.wait_status(job_id, timeout=timeout)
        final[job_id] = body
    return final


def assert_charged_once(books: dict, jobs: list[str]) -> None:
    assert sorted(books["charges"]) == sorted(jobs)  # one charge per job, none twice
    assert sorted(books["videos"]) == sorted(jobs)  # one library item per job
    assert books["balance"] == books["ledger"]
    assert books["reserved"] == 0 and books["active"] == 0


async def test_a_job_submitted_on_a_is_seen_live_on_b_and_c(cluster):
    a, b, c = cluster.start(3)
    async with client(a.url) as ca, client(b.url) as cb, client(c.url) as cc, \
            contextlib.AsyncExitStack() as stack:
        alice = await Account.signup(ca, "alice@example.com")
        key = await alice.upload(png_bytes())
        share_cookies(ca, cb, cc)
        readers = [await open_stream(x, stack) for x in (cb, cc)]
        for reader in readers:
            await reader.until(lambda e: e.event == "credits")  # the snapshot
        r = await alice.submit(key)
        assert r.status_code == 202, r.text
        job_id = r.json()["jobId"]
        for reader in readers:
            # the new card and the notice about work in progress, the credits held while
            # it runs, each change of the card, then the finished card, its toast, the
            # notice gone, the library tile and the charge (in whichever order the feed
            # brings them)
            def seen(test, reader=reader) -> bool:
                return any(test(x) for x in reader.seen)

            wanted = [
                lambda x: x.event == "jobs" and job_id in x.data,
                lambda x: x.event == "toast-progress" and "Generating video…" in x.data,
                lambda x: x.event == "credits" and "· 80 held" in x.data,
                lambda x: x.event == f"job-{job_id}" and 'data-status="completed"' in x.data,
                lambda x: x.event == "toasts" and f'id="toast-{job_id}"' in x.data
                and "toast-success" in x.data,
                lambda x: x.event == "toast-progress" and " hidden " in x.data,
                lambda x: x.event == "library" and job_id in x.data,
                lambda x: x.event == "credits" and ">920</span>" in x.data
                and "held" not in x.data,
            ]
            deadline = time.monotonic() + 60
            while not all(seen(test) for test in wanted):
                try:
                    await reader.next(max(0.01, deadline - time.monotonic()))
                except TimeoutError:
                    missing = [i for i, test in enumerate(wanted) if not seen(test)]
                    raise AssertionError(f"missing {missing}; saw "
                                         f"{[(e.event, e.data[:160]) for e in reader.seen]}"
                                         ) from None
            done = [e for e in reader.seen if e.event == f"job-{job_id}"][-1]
            assert 'data-status="completed"' in done.data and "data-play=" in done.data
            statuses = [e.data.split('data-status="')[1].split('"')[0] for e in reader.seen
                        if e.event == f"job-{job_id}"]
            assert statuses == sorted(statuses, key=["pending", "queued", "processing",
                                                     "finalizing", "completed"].index)
    books = await cluster.books("alice@example.com")
    assert_charged_once(books, [job_id])
    video = cluster.data_dir / "media" / "users"
    assert len([p for p in video.rglob(f"{job_id}.mp4")]) == 1


async def test_concurrent_submissions_over_three_processes_never_overspend(
        cluster, surreal_server_url):
    servers = cluster.start(3, SIGNUP_CREDITS=str(7 * PRICE))
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(client(s.url)) for s in servers]
        alice = await Account.signup(clients[0], "alice@example.com")
        key = await alice.upload(png_bytes())
        share_cookies(clients[0], *clients[1:])
        accounts = [Account(c, alice.email) for c in clients]
        answers = await asyncio.gather(*(accounts[i % 3].submit(key) for i in range(30)))
    codes = sorted(r.status_code for r in answers)
    assert codes.count(202) == 7 and codes.count(402) == 23, codes
    accepted = [r.json()["jobId"] for r in answers if r.status_code == 202]
    async with client(servers[1].url) as cb:
        share_cookies(clients[0], cb)
        final = await wait_final(Account(cb, alice.email), accepted)
    assert {v["status"] for v in final.values()} == {"completed"}
    books = await cluster.books("alice@example.com")
    assert_charged_once(books, accepted)
    assert books["balance"] == 0


@pytest.mark.parametrize("point", ["while_rendering", "after_download"])
async def test_a_job_whose_process_is_killed_completes_once_elsewhere(cluster, point):
    """Kill -9 (os._exit at a crash point) whichever process drives the job, while it
    renders or while it finalizes: another process takes the job when the lease expires."""
    crash_file = cluster.data_dir / f"crashed-{point}"
    servers = cluster.start(3, crash_at=point, REELFORGE_CRASH_ONCE=str(crash_file))
    async with client(servers[0].url) as ca:
        alice = await Account.signup(ca, "alice@example.com")
        key = await alice.upload(png_bytes())
        r = await alice.submit(key)
        job_id = r.json()["jobId"]
        deadline = time.monotonic() + 60
        crashed: list[ServerProcess] = []
        while not crashed and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            crashed = [s for s in servers if s.proc.poll() is not None]
        assert crash_file.exists(), "no process reached the crash point"
        assert len(crashed) == 1 and crashed[0].proc.returncode == 137
        alive = next(s for s in servers if s.proc.poll() is None)
        async with client(alive.url) as other:
            share_cookies(ca, other)
            final = await Account(other, alice.email).wait_status(job_id, timeout=90)
    assert final["status"] == "completed", final
    assert_charged_once(await cluster.books("alice@example.com"), [job_id])


async def test_sigterm_all_then_two_restart_and_every_job_completes_once(cluster):
    servers = cluster.start(3)
    clients = [httpx.AsyncClient(base_url=s.url, timeout=30) for s in servers]
    try:
        alice = await Account.signup(clients[0], "alice@example.com")
        key = await alice.upload(png_bytes())
        share_cookies(clients[0], *clients[1:])
        jobs = []
        for i in range(9):  # each process renders 2 at a time: the rest wait in its queue
            r = await Account(clients[i % 3], alice.email).submit(key)
            assert r.status_code == 202, r.text
            jobs.append(r.json()["jobId"])
        await asyncio.sleep(1.0)
        states = {row[1] for row in (await cluster.books(alice.email))["jobs"]}
        for s in servers:  # a normal stop, as a process manager does it
            s.proc.send_signal(signal.SIGTERM)
        for s in servers:  # uvicorn ends a graceful stop by re-raising the signal
            assert s.wait_exit(30) in (0, -signal.SIGTERM)
    finally:
        for c in clients:
            await c.aclose()
    assert states - {"completed"}, f"every job had finished before the stop: {states}"
    restarted = cluster.start(2)
    async with client(restarted[0].url) as c:
        share_cookies(clients[0], c)
        final = await wait_final(Account(c, alice.email), jobs)
    assert {v["status"] for v in final.values()} == {"completed"}, final
    assert_charged_once(await cluster.books(alice.email), jobs)


async def test_logout_on_one_process_ends_the_session_on_all(cluster):
    a, b, c = cluster.start(3)
    async with client(a.url) as ca, client(b.url) as cb, client(c.url) as cc, \
            contextlib.AsyncExitStack() as stack:
        alice = await Account.signup(ca, "alice@example.com")
        share_cookies(ca, cb, cc)
        assert (await cb.get("/api/me")).status_code == 200
        stream = await open_stream(cb, stack)
        await stream.until(lambda e: e.event == "credits")
        copied = dict(ca.cookies.items())
        r = await alice.post("/logout")
        assert r.status_code == 303
        for x in (cb, cc):  # a copy of the cookie is worth nothing anywhere, at once
            assert (await x.get("/api/me", cookies=copied)).status_code == 401
        await asyncio.wait_for(stream.drain_to_end(), 5)  # B's open stream ended too


async def test_a_login_burst_over_three_processes_gets_at_most_20_checks(cluster):
    servers = cluster.start(3)
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(client(s.url)) for s in servers]
        await Account.signup(clients[0], "alice@example.com")
        await clients[0].post("/logout", headers={
            "x-csrftoken": clients[0].cookies.get("csrftoken")})
        token = clients[0].cookies.get("csrftoken")
        for other in clients[1:]:
            other.cookies.set("csrftoken", token)

        async def attempt(i: int, password: str):
            x = clients[i % 3]
            return await x.post("/login", data={"email": "alice@example.com",
                                                "password": password, "_csrf_token": token},
                                follow_redirects=False)

        burst = [attempt(i, f"wrong-{i}-{uuid.uuid4().hex[:4]}") for i in range(60)]
        burst.insert(30, attempt(1, "correct-horse-1"))
        answers = await asyncio.gather(*burst)
    codes = [r.status_code for r in answers]
    checked = sum(code in (400, 303) for code in codes)  # a 429 is refused unchecked
    assert checked <= 20, codes
    assert codes.count(429) >= 41
    assert set(codes) <= {400, 303, 429}


def test_workers_are_refused_on_the_embedded_database(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL")
    done = subprocess.run([sys.executable, "-m", "app", "serve", "--workers", "2"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "--workers needs a SurrealDB server" in done.stderr


async def test_an_item_deleted_on_one_process_leaves_the_pages_on_another(cluster):
    a, b = cluster.start(2)
    async with client(a.url) as ca, client(b.url) as cb, contextlib.AsyncExitStack() as stack:
        alice = await Account.signup(ca, "alice@example.com")
        share_cookies(ca, cb)
        key = await alice.upload()
        stream = await open_stream(cb, stack)
        await stream.until(lambda e: e.event == "credits")
        assert (await alice.delete("/api/library", params={"key": key})).status_code == 200
        removed = await stream.until(lambda e: e.event == "library-removed", timeout=10)
        assert removed.data == key  # from B's change feed: A's deletion, with its key
