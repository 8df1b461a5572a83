"""Backups and restore (app/backup/, docs/OPERATIONS.md) with real parts: the embedded engine
on a real surrealkv directory, the real app on a socket (tests/fakes/live_server.py), the
real `python -m app backup` / `restore` commands, moto over HTTP for S3, and the SurrealDB
stand-in for a server database."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.backup import archive
from app.backup.restore import RestoreRefused, restore
from app.backup.service import BackupBusy, BackupService
from app.db import backups as backups_db
from app.db import jobs as jobs_db
from app.db import templates as templates_db
from app.db import users as users_db
from app.db.connection import Database, rid
from app.db.records import NewJob
from app.db.schema import STATE_TABLE, applied_digest, apply_schema, schema_digest
from app.db.templates import sync_catalogue
from app.jobs.states import ACTIVE, Status
from app.settings import Settings
from tests.crashkit import Browserless, ServerProcess, read_books
from tests.fakes.fal_server import JobSpec
from tests.fakes.live_server import DEFAULT_PASSWORD, LiveServer, live_account, open_events
from tests.fakes.s3_server import s3_server_fixture  # noqa: F401
from tests.helpers import Account, png_bytes

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "backup-token-for-tests"  # noqa: S105
GONE = "a-driver-that-died"  # holds the leases of the jobs made in each active state
FINAL_PUBLIC = ("completed", "failed", "canceled")
ACTIVE_VALUES = sorted(s.value for s in ACTIVE)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    if "DATABASE_URL" not in env:
        full.pop("DATABASE_URL", None)  # conftest's mem://: these use DATA_DIR's store
    return subprocess.run([sys.executable, "-m", "app", *args], env=full, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def embedded(data: Path, backups: Path, **kw: Any) -> Settings:
    return Settings(data_dir=data, database_url=None, backup_dir=backups,
                    backup_interval_hours=0, **kw)


async def answers(account: Account) -> dict[str, Any]:
    """What the API tells a person about their account."""
    me = (await account.get("/api/me")).json()
    library = (await account.get("/api/library")).json()
    jobs = (await account.get("/api/jobs", params={"limit": 100})).json()["jobs"]
    return {"me": me, "library": library, "jobs": jobs}


async def wait_all_final(account: Account, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = (await account.get("/api/jobs", params={"limit": 100})).json()["jobs"]
        if all(j["status"] in FINAL_PUBLIC for j in jobs) or time.monotonic() > deadline:
            return jobs
        await asyncio.sleep(0.2)


async def books(db: Database, email: str) -> dict[str, Any]:
    """A person's account as the database has it: balance against the ledger, holds against
    the active jobs, and per finished job its charges and library videos."""
    user = await users_db.by_email(db, email)
    owner = {"u": rid("user", user.id)}
    ledger = await db.read_one("SELECT amount, reason, job, created_at, id FROM ledger "
                               "WHERE owner = $u "
                               "ORDER BY created_at, id", owner)
    jobs = await db.read_one("SELECT * FROM video_job WHERE owner = $u", owner)
    videos = await db.read_one("SELECT VALUE job FROM library WHERE owner = $u AND "
                               "kind = 'video'", owner)
    charges = [e["job"] for e in ledger if e["reason"] == "video"]
    active = [j for j in jobs if j["status"] in ACTIVE_VALUES]
    return {"balance": user.balance, "ledger_sum": sum(e["amount"] for e in ledger),
            "ledger": ledger, "reserved": user.reserved, "active_jobs": user.active_jobs,
            "held": sum(j["credits"] for j in active), "active": len(active),
            "charges": charges, "videos": videos,
            "completed": sorted(str(j["id"].id) for j in jobs if j["status"] == "completed")}


async def craft_jobs(services: Any, owner_id: str, start_key: str) -> dict[str, str]:
    """A job in each active state (and a failed one) as the driver leaves them, leased by a
    driver that died, so that the running driver leaves them alone until a restart."""
    template = await templates_db.by_slug(services.db, "product-turntable")
    made: dict[str, str] = {}
    steps = {"pending": [], "queued": [Status.QUEUED],
             "processing": [Status.QUEUED, Status.PROCESSING],
             "finalizing": [Status.QUEUED, Status.PROCESSING, Status.FINALIZING],
             "failed": [Status.FAILED]}
    for state, path in steps.items():
        now = datetime.now(UTC)
        job_id = uuid.uuid4().hex
        record = NewJob(
            template=template.slug, template_name=template.name,
            start_key=start_key, variables={"PRODUCT": "Lamp"},
            prompt="A lamp turning", provider="local", endpoint=template.endpoint,
            parameters=template.parameters, credits=template.credits,
            deadline_at=now + timedelta(minutes=30),
            created_at=now, updated_at=now, due_at=now,
        )
        await jobs_db.create(services.db, job_id, owner_id, record, 50)
        # held by a driver that is gone
        await services.db.write("UPDATE $j SET lease_owner = $o, lease_until = $u",
                                {"j": rid("video_job", job_id), "o": GONE,
                                 "u": now + timedelta(hours=1)})
        request_id = uuid.uuid4().hex
        for step in path:
            fields = {Status.QUEUED: {"provider_request_id": request_id, "attempts": 1},
                      Status.FINALIZING: {"provider_done": True},
                      Status.FAILED: {"error": "The provider refused the request"}}.get(step)
            assert await services.jobs.move(job_id, step, lease=GONE, fields=fields,
                                            reason="made for the backup test")
        if state == "finalizing":  # as fal's webhook would have said it was done
            await jobs_db.accept_webhook(services.db, request_id, job_id, ACTIVE_VALUES,
                                         3600, "webhook: done")
        made[state] = job_id
    return made


def uid(server: LiveServer, email: str) -> str:
    return server.run(users_db.by_email(server.services.db, email)).id


# -- the whole thing -----------------------------------------------------------------------


async def test_backup_of_a_running_app_restores_into_a_wiped_data_directory(
        tmp_path, live_server_factory):
    data, store = tmp_path / "data", tmp_path / "backups"
    server = live_server_factory(embedded(data, store, backup_token=TOKEN,
                                          local_provider_concurrency=1, max_active_jobs=10))
    env = {"DATA_DIR": str(data), "BACKUP_DIR": str(store), "BACKUP_TOKEN": TOKEN,
           "PORT": str(server.port)}
    async with contextlib.AsyncExitStack() as stack:
        alice, bob, carol = [await stack.enter_async_context(live_account(server, email))
                             for email in ("alice@example.com", "bob@example.com",
                                           "carol@example.com")]
        server.run(users_db.set_admin(server.services.db, uid(server, alice.email), True))
        # bob: a finished video, and a canceled job submitted with an Idempotency-Key
        bob_key = await bob.upload(png_bytes(color=(20, 120, 200)))
        submitted = (await bob.submit(bob_key, "product-turntable", {"PRODUCT": "Mug"})).json()
        done = await bob.wait_status(submitted["jobId"])
        assert done["status"] == "completed", done
        canceled = (await bob.post("/api/templates/video", headers={"Idempotency-Key": "k-1"},
                                   json={"templateSlug": "product-turntable",
                                         "startKey": bob_key,
                                         "variables": {"PRODUCT": "Cup"}})).json()
        assert (await bob.post("/api/templates/video/cancel",
                               params={"jobId": canceled["jobId"]})).status_code == 200
        # carol: a job in every active state, and a failed one
        carol_key = await carol.upload(png_bytes(color=(90, 200, 60)))
        crafted = server.run(craft_jobs(server.services, uid(server, carol.email), carol_key))
        # a failed sign-in (the throttle's counters)
        async with httpx.AsyncClient(base_url=server.url) as stranger:
            await stranger.get("/login")
            await stranger.post("/login", data={"email": bob.email, "password": "wrong-one-1",
                                                "_csrf_token": stranger.cookies["csrftoken"]})
        bob_before, carol_before = await answers(bob), await answers(carol)
        bob_books = server.run(books(server.services.db, bob.email))
        carol_ledger = server.run(books(server.services.db, carol.email))["ledger"]
        bob_video = (await bob.get(f"/media/{done['key']}")).content
        assert bob_video.startswith(b"\x00\x00\x00") and b"ftyp" in bob_video[:16]  # an MP4

        # alice: jobs rendering while the backup is made, and pages with open streams
        alice_key = await alice.upload()
        alice_jobs = [(await alice.submit(alice_key, "product-turntable",
                                          {"PRODUCT": f"Lamp {i}"})).json()["jobId"]
                      for i in range(3)]
        # …and a batch of two rows, which the restored app finishes too
        alice_batch = (await alice.post("/api/batches", json={
            "templateSlug": "product-turntable", "startKey": alice_key,
            "rows": [{"variables": {"PRODUCT": "Vase"}},
                     {"variables": {"PRODUCT": "Bowl"}}]})).json()["batchId"]
        alice_stream = await stack.enter_async_context(open_events(alice))
        await stack.enter_async_context(open_events(bob))
        await alice.wait_status(alice_jobs[0], done=("processing",), timeout=10)

        # The token route: only with the token, from this machine, not through a proxy.
        run = server.url + "/admin/backups/run"
        async with httpx.AsyncClient() as http:
            for headers in ({}, {"authorization": "Bearer nope"},
                            {"authorization": f"Bearer {TOKEN}", "x-forwarded-for": "1.2.3.4"}):
                assert (await http.post(run, headers=headers)).status_code == 404

        made = await asyncio.to_thread(cli, "backup", env=env)  # asks the running server
        assert made.returncode == 0, made.stderr
        assert "backup reelforge-" in made.stdout and "writes held" in made.stdout
        # the streams lived through it: alice's first video still arrives
        await alice_stream.until(lambda e: e.event.startswith("job-")
                                 and "data-play=" in e.data, timeout=30)
        assert await answers(bob) == bob_before and await answers(carol) == carol_before

    (file,) = store.glob("reelforge-*.tar")
    manifest, _media = archive.verify(file)
    empty = {t for t, n in manifest["tables"].items() if n == 0}
    assert not empty, f"no data in {empty}"  # data in every table
    server.stop()

    shutil.rmtree(data)  # the disk is lost; the backups were elsewhere
    restored = await asyncio.to_thread(cli, "restore", str(file), env=env)
    assert restored.returncode == 0, restored.stderr
    out = restored.stdout
    assert re.search(rf"^\s+user\s+{manifest['tables']['user']}$", out, re.M), out
    assert f"media: {manifest['media']['files']} files" in out
    assert "every balance equals the sum of its ledger" in out and "warning" not in out

    server = live_server_factory(embedded(data, store, local_provider_concurrency=2))
    async with contextlib.AsyncExitStack() as stack:
        # sign-in works with the old passwords
        alice, bob, carol = [await stack.enter_async_context(signed_in(server, email))
                             for email in ("alice@example.com", "bob@example.com",
                                           "carol@example.com")]
        # bob's account, library and finished jobs are as they were
        assert await answers(bob) == bob_before
        assert server.run(books(server.services.db, bob.email)) == bob_books
        assert (await bob.get(f"/media/{done['key']}")).content == bob_video
        # carol's active jobs resume and each ends once; her finished ones are as they were
        jobs = {j["jobId"]: j for j in await wait_all_final(carol)}
        before = {j["jobId"]: j for j in carol_before["jobs"]}
        assert jobs[crafted["failed"]] == before[crafted["failed"]]
        for state in ("pending", "queued", "processing", "finalizing"):
            assert jobs[crafted[state]]["status"] == "completed", (state, jobs[crafted[state]])
        carol_after = server.run(books(server.services.db, carol.email))
        assert carol_after["ledger"][:len(carol_ledger)] == carol_ledger
        # alice's jobs, whatever state the backup caught them in, end once too
        await wait_all_final(alice)
        restored_batch = (await alice.get(f"/api/batches/{alice_batch}")).json()
        assert (restored_batch["status"], restored_batch["completed"]) == ("completed", 2)
        for person in (alice, bob, carol):
            b = server.run(books(server.services.db, person.email))
            assert b["balance"] == b["ledger_sum"], person.email
            assert b["reserved"] == b["held"] == 0 and b["active_jobs"] == b["active"] == 0
            assert sorted(b["charges"]) == sorted(b["videos"]) == b["completed"], person.email
        assert len(carol_after["completed"]) == 4
        # the backup is listed on the admin page of the restored app
        page = await alice.get("/admin/backups", headers={"accept": "text/html"})
        assert page.status_code == 200 and file.name in page.text


@contextlib.asynccontextmanager
async def signed_in(server: LiveServer, email: str):
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        await client.get("/login")
        r = await client.post("/login", data={"email": email, "password": DEFAULT_PASSWORD,
                                              "_csrf_token": client.cookies["csrftoken"]})
        assert r.status_code == 303, (email, r.status_code, r.text[:200])
        yield Account(client, email)


@pytest.fixture
def fal(fake_fal):
    fake_fal.reset()
    fake_fal.defaults = JobSpec(queue_time=0.3, run_time=4.0)
    return fake_fal


def test_a_fal_job_in_the_backup_resumes_by_its_request_id(fal, tmp_path):
    """fal keeps rendering while the app is restored: the restored driver asks about the
    job by the request id in the backup, and does not submit it again."""
    data, store = tmp_path / "data", tmp_path / "backups"
    data.mkdir()
    env = {**fal.env(), "VIDEO_PROVIDER": "fal", "STATUS_INTERVAL": "0.2",
           "BACKUP_DIR": str(store), "BACKUP_TOKEN": TOKEN, "BACKUP_INTERVAL_HOURS": "0"}
    server = ServerProcess(data, env)
    try:
        server.start()
        person = Browserless(server.url)
        person.signup("fal@example.com")
        job_id = person.submit(person.upload(png_bytes()))
        deadline = time.monotonic() + 10
        while not fal.counts_by_job() and time.monotonic() < deadline:
            time.sleep(0.05)
        made = cli("backup", env={**env, "DATA_DIR": str(data), "PORT": str(server.port)})
        assert made.returncode == 0, made.stderr
        server.stop()
        shutil.rmtree(data / "db")
        shutil.rmtree(data / "media")
        (file,) = store.glob("reelforge-*.tar")
        restored = cli("restore", str(file), env={"DATA_DIR": str(data)})
        assert restored.returncode == 0, restored.stderr
        assert "credits held match the active jobs (1 active)" in restored.stdout
        server.start()
        final = person.wait_final(job_id, timeout=60)
        assert final["status"] == "completed", final
        server.stop()
    finally:
        server.kill()
    (counts,) = fal.counts_by_job().values()
    assert counts["submit"] == 1 and counts["result"] >= 1, counts
    books = read_books(data, "fal@example.com")
    assert books.charges == 1 == books.video_items and books.balance == books.ledger_sum


# -- consistency under load ----------------------------------------------------------------


async def test_a_backup_during_20_submissions_a_second_is_consistent(tmp_path,
                                                                     live_server_factory):
    server = live_server_factory(Settings(
        data_dir=tmp_path / "live", database_url="mem://", backup_dir=tmp_path / "backups",
        backup_interval_hours=0, max_active_jobs=50, signup_credits=5000,
        local_provider_concurrency=2))
    db = server.services.db
    async with contextlib.AsyncExitStack() as stack:
        people = [await stack.enter_async_context(live_account(server, f"p{i}@example.com"))
                  for i in range(6)]
        keys = [await p.upload() for p in people]
        ids = [uid(server, p.email) for p in people]
        stop = asyncio.Event()
        submitted = 0

        async def submit() -> None:  # 20 a second, round the six people
            nonlocal submitted
            n = 0
            while not stop.is_set():
                i = n % len(people)
                r = await people[i].submit(keys[i], "product-turntable", {"PRODUCT": f"P{n}"})
                assert r.status_code == 202, r.text
                submitted += 1
                n += 1
                await asyncio.sleep(0.05)

        async def grant() -> None:  # balances and the ledger move too
            n = 0
            while not stop.is_set():
                await asyncio.to_thread(server.run, users_db.grant(db, ids[n % len(ids)], 7,
                                                                   "grant"))
                n += 1
                await asyncio.sleep(0.1)

        load = [asyncio.create_task(submit()), asyncio.create_task(grant())]
        await asyncio.sleep(1.5)
        backups = server.app.state.backups
        result = await asyncio.to_thread(server.run, backups.run("test"), 60)
        during = submitted
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*load)
    assert 0 < result.manifest["tables"]["video_job"] < submitted, (during, submitted)
    assert result.manifest["timings"]["writes_held_s"] < 2

    target = embedded(tmp_path / "restored", tmp_path / "unused")
    report = await restore(target, str(tmp_path / "backups" / result.name))
    assert not report.warnings, report.warnings
    check = Database(target)
    await check.connect()
    try:
        for p in people:
            b = await books(check, p.email)
            assert b["balance"] == b["ledger_sum"], (p.email, b["balance"], b["ledger_sum"])
            assert (b["reserved"], b["active_jobs"]) == (b["held"], b["active"]), p.email
            assert sorted(b["charges"]) == sorted(b["videos"]) == b["completed"], p.email
        # each job was recorded with its first timeline entry, in one transaction
        jobs, firsts = await check.read(
            "SELECT VALUE record::id(id) FROM video_job;"
            "SELECT VALUE job FROM job_event WHERE reason = 'submitted';")
        assert sorted(jobs) == sorted(firsts)
    finally:
        await check.close()


# -- refusing bad files --------------------------------------------------------------------


@pytest.fixture
async def small_backup(tmp_path) -> Path:
    """A backup of a database with two people, a job and media files."""
    settings = Settings(data_dir=tmp_path / "src", database_url="mem://",
                        backup_dir=tmp_path / "backups", backup_interval_hours=0)
    db = Database(settings)
    await db.connect()
    try:
        await apply_schema(db)
        await sync_catalogue(db)
        for email in ("ann@example.com", "ben@example.com"):
            user = await users_db.create(db, email, "hash", 300)
            await users_db.grant(db, user.id, 25, "grant")
        for i in range(3):
            path = settings.media_dir / f"users/u{i}/library/images/{i}.png"
            path.parent.mkdir(parents=True)
            path.write_bytes(png_bytes(color=(i * 40, 10, 10)))
        result = await BackupService(settings, db).run("test")
    finally:
        await db.close()
    return tmp_path / "backups" / result.name


def damaged(source: Path, dest: Path, change) -> Path:
    data = bytearray(source.read_bytes())
    dest.write_bytes(change(data))
    return dest


def member_offset(path: Path, name: str) -> tuple[int, int]:
    with tarfile.open(path) as tar:
        info = tar.getmember(name)
        return info.offset_data, info.size


def flip(at: int):
    def change(data: bytearray) -> bytes:
        data[at] ^= 0x55
        return bytes(data)
    return change


async def test_a_damaged_or_truncated_backup_is_refused_and_nothing_is_written(
        tmp_path, small_backup):
    db_at, db_size = member_offset(small_backup, archive.DATABASE)
    media_at, _ = member_offset(small_backup, archive.MEDIA)
    manifest_at, _ = member_offset(small_backup, archive.MANIFEST)
    size = small_backup.stat().st_size
    cases = {
        "database byte": (flip(db_at + db_size // 2), "damaged"),
        "media list byte": (flip(media_at + 5), "damaged"),
        "manifest byte": (flip(manifest_at + 20), "manifest"),
        "header byte": (flip(100), "damaged"),
        "padding byte": (flip(db_at + db_size + 1), "damaged"),
        "cut in the database": (lambda d: bytes(d[: db_at + db_size // 2]), "truncated"),
        "cut after the database": (lambda d: bytes(d[: db_at + db_size + 100]), "truncated"),
        "cut in the end blocks": (lambda d: bytes(d[: size - 9000]), "truncated"),
        "not a backup": (lambda d: b"hello" * 3000, "not an intact backup"),
    }
    for what, (change, words) in cases.items():
        bad = damaged(small_backup, small_backup.with_name(f"bad-{len(what)}.tar"), change)
        target = embedded(tmp_path / f"into-{len(what)}-{what[:3]}", tmp_path / "x")
        with pytest.raises(archive.BackupInvalid) as refused:
            await restore(target, str(bad))
        assert words in str(refused.value), (what, str(refused.value))
        assert not target.data_dir.exists(), what  # nothing written, not even a directory
        bad.unlink()

    # a missing media file: refused before anything is written
    entries = archive.verify(small_backup)[1]
    mirror = small_backup.parent / "media" / entries[0]["sha256"][:2] / entries[0]["sha256"]
    hidden = mirror.rename(mirror.with_name("elsewhere"))
    target = embedded(tmp_path / "no-media", tmp_path / "x")
    with pytest.raises(archive.BackupInvalid, match="missing"):
        await restore(target, str(small_backup))
    assert not target.data_dir.exists()
    hidden.rename(mirror)

    # another schema version: refused with what to do
    manifest = json.loads(_member(small_backup, archive.MANIFEST))
    manifest["schema_version"] = 99
    with tempfile_dir(tmp_path) as work:
        members = {n: work / n for n in (archive.MEDIA, archive.DATABASE)}
        for name, path in members.items():
            path.write_bytes(_member(small_backup, name))
        newer = small_backup.with_name("reelforge-20990101T000000.000000Z-abcd.tar")
        archive.write_archive(newer, manifest, members)
    with pytest.raises(RestoreRefused, match="schema version 99"):
        await restore(embedded(tmp_path / "v99", tmp_path / "x"), str(newer))
    newer.unlink()

    # the command says so and exits 1; the intact file restores (so the cases above could
    # have passed)
    bad = damaged(small_backup, tmp_path / "cut.tar", lambda d: bytes(d[: size // 2]))
    out = cli("restore", str(bad), env={"DATA_DIR": str(tmp_path / "by-cli")})
    assert out.returncode == 1
    assert "truncated" in out.stderr and "nothing was written" in out.stderr
    assert not (tmp_path / "by-cli").exists()
    report = await restore(embedded(tmp_path / "good", tmp_path / "x"), str(small_backup))
    assert report.written["user"] == 2 and report.media_files == 3


def _member(path: Path, name: str) -> bytes:
    with tarfile.open(path) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


@contextlib.contextmanager
def tempfile_dir(base: Path):
    work = base / uuid.uuid4().hex
    work.mkdir()
    try:
        yield work
    finally:
        shutil.rmtree(work)


async def test_restore_refuses_a_data_directory_in_use_unless_forced(tmp_path, small_backup):
    target = embedded(tmp_path / "target", tmp_path / "x")
    await restore(target, str(small_backup))
    with pytest.raises(RestoreRefused, match="--force"):
        await restore(target, str(small_backup))
    report = await restore(target, str(small_backup), force=True)
    aside = [Path(p).name for p in report.moved_aside]
    assert len(aside) == 2 and aside[0].startswith("db.before-restore-")
    # a running server holds the store: the command says so (exit 2), nothing is touched
    db = Database(target)
    await db.connect()
    try:
        out = await asyncio.to_thread(cli, "restore", str(small_backup), "--force",
                                      env={"DATA_DIR": str(target.data_dir)})
        # and `backup` needs the server to make it, which it asks only with a token
        asked = await asyncio.to_thread(cli, "backup", env={"DATA_DIR": str(target.data_dir),
                                                            "BACKUP_DIR": str(tmp_path / "b")})
    finally:
        await db.close()
    assert out.returncode == 2 and "already open" in out.stderr
    assert asked.returncode == 1 and "BACKUP_TOKEN" in asked.stderr
    # with nothing running, `backup` opens the store and makes the backup itself
    made = cli("backup", env={"DATA_DIR": str(target.data_dir), "BACKUP_DIR": str(tmp_path / "b")})
    assert made.returncode == 0 and "records in" in made.stdout, made.stderr
    assert len(list((tmp_path / "b").glob("reelforge-*.tar"))) == 1
    # --check restores into memory only
    check = cli("restore", str(small_backup), "--check",
                env={"DATA_DIR": str(tmp_path / "never")})
    assert check.returncode == 0 and "checked" in check.stdout
    assert not (tmp_path / "never").exists()


# -- the encoding round trip ---------------------------------------------------------------


async def test_every_kind_of_value_round_trips(tmp_path):
    settings = Settings(data_dir=tmp_path / "src", database_url="mem://",
                        backup_dir=tmp_path / "backups", backup_interval_hours=0)
    db = Database(settings)
    await db.connect()
    try:
        await apply_schema(db)
        await db.write("""
            CREATE kinds:⟨odd id: 'quote' ⟩ CONTENT {
                at: d'2024-02-29T23:59:59.123456789Z', took: 1w2d3h4m5s6ms7µs8ns,
                bytes: <bytes> "\\u{1}\\u{ff}bin", dec: 3.14159265358979323846dec,
                float: 1.5f, int: -9007199254740993, uuid: u'0191c3a0-7b8a-7d6e-9f00-1a2b3c4d5e6f',
                none: NONE, null: NULL, text: "tab\\t line\\n quote' dq\\" back\\\\ ünï ⟩ 🎬",
                nested: { list: [1, [2, { deep: true }], "x"], empty: {}, link: user:⟨a-b⟩ },
                point: (13.4, 52.5), ids: [kinds:1, kinds:['a', 2], kinds:{ k: 'v' }]
            };
            CREATE kinds:1 SET n = 1; CREATE kinds:['a', 2] SET n = 2;
            CREATE kinds:{ k: 'v' } SET n = 3;
        """)
        await db.write("CREATE kinds:params CONTENT $v", {"v": {
            "when": datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "raw": bytes(range(256)),
            "text": "line\u2028sep \x01 ctrl"}})
        before = sorted(await db.read_one("SELECT VALUE <string> $this FROM kinds"))
        typed = await db.read_one("SELECT * FROM kinds ORDER BY id")
        result = await BackupService(settings, db).run("test")
    finally:
        await db.close()
    target = embedded(tmp_path / "dst", tmp_path / "x")
    await restore(target, str(tmp_path / "backups" / result.name))
    db = Database(target)
    await db.connect()
    try:
        assert sorted(await db.read_one("SELECT VALUE <string> $this FROM kinds")) == before
        assert await db.read_one("SELECT * FROM kinds ORDER BY id") == typed
    finally:
        await db.close()
    printed = "".join(before)  # nanoseconds and the exact types were kept
    assert "d'2024-02-29T23:59:59.123456789Z'" in printed and "1w2d3h4m5s6ms7µs8ns" in printed
    assert "3.14159265358979323846dec" in printed and "u'0191c3a0" in printed


# -- the schedule and its lease ------------------------------------------------------------


async def test_one_scheduled_backup_per_interval_whichever_process_asks(tmp_path):
    settings = Settings(data_dir=tmp_path, database_url="mem://", backup_interval_hours=1,
                        backup_dir=tmp_path / "backups")
    db = Database(settings)
    await db.connect()
    try:
        await apply_schema(db)
        await users_db.create(db, "a@example.com", "hash", 10)
        # two processes' services (two owners) against one database
        one, two = BackupService(settings, db), BackupService(settings, db)
        made = await asyncio.gather(one.run_if_due(), two.run_if_due(), one.run_if_due())
        assert sum(r is not None for r in made) == 1
        assert await asyncio.gather(one.run_if_due(), two.run_if_due()) == [None, None]
        # not due, but one on demand still runs; while another holds the lease, it waits
        assert await two.run("admin")
        assert await backups_db.acquire(db, "elsewhere", 60) is not None
        with pytest.raises(BackupBusy):
            await one.run("admin")
        await backups_db.finish(db, "elsewhere", error="stopped")
        # due again once the interval has passed
        settings.backup_interval_hours = 0.5 / 3600
        await asyncio.sleep(0.6)
        assert (await one.run_if_due()) is None  # a failure was just recorded: wait
        await db.write("UPDATE backup_state:main SET failed_at = NONE")
        assert (await one.run_if_due()) is not None
        assert len(list((tmp_path / "backups").glob("*.tar"))) == 3
        state = await backups_db.state(db)
        assert state.get("lease_owner") is None and state["last_name"].endswith(".tar")
    finally:
        await db.close()


async def test_processes_sharing_a_server_make_one_scheduled_backup(
        tmp_path, surreal_server_url, surreal_db_name):
    settings = Settings(data_dir=tmp_path, database_url=surreal_server_url,
                        surrealdb_user="root", surrealdb_pass="root", surrealdb_ns="test",
                        surrealdb_db=surreal_db_name, backup_dir=tmp_path / "backups",
                        backup_interval_hours=1)
    connections = [Database(settings) for _ in range(3)]  # one per app process
    for db in connections:
        await db.connect()
    try:
        await apply_schema(connections[0])
        services = [BackupService(settings, db) for db in connections]
        made = await asyncio.gather(*[s.run_if_due() for s in services])
        assert sum(r is not None for r in made) == 1
        assert await asyncio.gather(*[s.run_if_due() for s in services]) == [None] * 3
    finally:
        for db in connections:
            await db.close()


# -- media: incremental, retention ---------------------------------------------------------


async def test_media_are_incremental_and_retention_keeps_what_kept_backups_need(tmp_path):
    settings = Settings(data_dir=tmp_path, database_url="mem://", backup_keep=2,
                        backup_dir=tmp_path / "backups", backup_interval_hours=0)

    def put(name: str, color: tuple[int, int, int]) -> Path:
        path = settings.media_dir / "users/u1/library/images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(color=color))
        return path

    mirror = settings.backups_path / "media"
    stored = lambda: sorted(p.name for p in mirror.glob("*/*"))  # noqa: E731
    db = Database(settings)
    await db.connect()
    try:
        await apply_schema(db)
        service = BackupService(settings, db)
        first = put("a.png", (1, 2, 3))
        put("b.png", (4, 5, 6))
        r1 = await service.run("test")
        assert (r1.manifest["media"]["files"], r1.manifest["media"]["new_files"]) == (2, 2)
        assert len(stored()) == 2 and (mirror.parent / r1.name).exists()
        put("c.png", (7, 8, 9))
        r2 = await service.run("test")
        assert (r2.manifest["media"]["files"], r2.manifest["media"]["new_files"]) == (3, 1)
        a_hash = hashlib.sha256(first.read_bytes()).hexdigest()
        first.unlink()  # a deleted upload: the backups that list it still need it
        r3 = await service.run("test")
        assert (r3.manifest["media"]["files"], r3.manifest["media"]["new_files"]) == (2, 0)
        assert not (mirror.parent / r1.name).exists()  # keep=2
        assert a_hash in stored()  # r2 still lists it
        await service.run("test")  # r2 goes, and with it the last need for a.png
        assert a_hash not in stored() and len(stored()) == 2
    finally:
        await db.close()


# -- S3 ------------------------------------------------------------------------------------


async def test_backups_to_an_s3_prefix_and_a_restore_from_it(tmp_path, s3_server):
    prefix = f"backups-{uuid.uuid4().hex[:8]}/"
    s3 = {k.lower(): v for k, v in s3_server.env().items() if k != "STORAGE"}
    settings = Settings(data_dir=tmp_path / "src", database_url="mem://", backup_keep=1,
                        backup_s3_prefix=prefix, backup_local=False, backup_interval_hours=0,
                        **s3)
    image = settings.media_dir / "users/u1/library/images/x.png"
    image.parent.mkdir(parents=True)
    image.write_bytes(png_bytes())
    db = Database(settings)
    await db.connect()
    try:
        await apply_schema(db)
        await users_db.create(db, "s3@example.com", "hash", 40)
        service = BackupService(settings, db)
        await service.run("test")
        result = await service.run("test")
        listed = await service.recent()
        service.close()
    finally:
        await db.close()
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(
        Bucket=s3_server.bucket, Prefix=prefix).get("Contents", [])]
    sha = hashlib.sha256(image.read_bytes()).hexdigest()
    assert sorted(keys) == sorted([prefix + result.name, f"{prefix}media/{sha}"])  # keep=1
    assert [b["name"] for b in listed] == [result.name]
    assert listed[0]["manifest"]["tables"]["user"] == 1
    assert not (settings.backups_path).exists() or not list(settings.backups_path.glob("*"))

    target = Settings(data_dir=tmp_path / "dst", database_url=None, backup_s3_prefix=prefix,
                      **s3)
    report = await restore(target, f"s3:{result.name}")
    assert report.written["user"] == 1 and report.media_files == 1
    assert (target.media_dir / "users/u1/library/images/x.png").read_bytes() == \
        image.read_bytes()


# -- a SurrealDB server --------------------------------------------------------------------


async def test_server_database_backup_and_restore(tmp_path, surreal_server_url,
                                                  surreal_db_name):
    def server(name: str) -> Settings:
        return Settings(data_dir=tmp_path, database_url=surreal_server_url,
                        surrealdb_user="root", surrealdb_pass="root", surrealdb_ns="test",
                        surrealdb_db=name, backup_dir=tmp_path / "backups",
                        backup_interval_hours=0)

    source = server(surreal_db_name)
    db = Database(source)
    await db.connect()
    try:
        await apply_schema(db)
        await sync_catalogue(db)
        user = await users_db.create(db, "srv@example.com", "hash", 500)
        await users_db.grant(db, user.id, -120, "adjust")
        result = await BackupService(source, db).run("test")
    finally:
        await db.close()
    assert result.manifest["source"]["engine"] == "server"

    target = server(surreal_db_name + "_restored")
    report = await restore(target, str(tmp_path / "backups" / result.name))
    assert report.written == {t: n for t, n in result.manifest["tables"].items() if n}
    with pytest.raises(RestoreRefused, match="holds data"):
        await restore(target, str(tmp_path / "backups" / result.name))
    await restore(target, str(tmp_path / "backups" / result.name), force=True)
    db = Database(target)
    await db.connect()
    try:
        user = await users_db.by_email(db, "srv@example.com")
        assert user.balance == 380 == await users_db.ledger_sum(db, user.id)
        counts = await db.read_one("SELECT count() FROM user GROUP ALL")
        assert counts[0]["count"] == 1  # --force replaced, not added
        # Which schema the store had applied is not data: not backed up, and the restore
        # records its own once the table events are back.
        assert STATE_TABLE not in result.manifest["tables"]
        assert await applied_digest(db) == schema_digest(embedded=False)
    finally:
        await db.close()


# -- the admin pages stay hidden -----------------------------------------------------------


@pytest.fixture
def settings(tmp_path) -> Settings:
    """For the tests that use the `client` fixture: a token the server knows."""
    return Settings(data_dir=tmp_path, database_url="mem://", backup_token=TOKEN,
                    backup_interval_hours=0)


async def test_backup_routes_are_hidden_from_everyone_but_admins(client, alice):
    from tests.integration.api_support import in_app, sharing, user_id

    paths = ["/admin/backups", "/admin/backups/", "/admin/backups/run", "/admin/backups/x"]
    async with sharing(client) as stranger:
        await stranger.get("/login")
        for who in (stranger, alice.client):
            for method in ("GET", "POST", "DELETE"):
                headers = {"accept": "text/html", "x-csrftoken": who.cookies.get("csrftoken"),
                           "authorization": f"Bearer {TOKEN}"}
                unknown = await who.request(method, "/no-such-page", headers=headers)
                for path in paths:
                    r = await who.request(method, path, headers=headers)
                    assert (r.status_code, r.text) == (unknown.status_code, unknown.text), \
                        (method, path)
    services = client.app.state.services
    in_app(client, users_db.set_admin, services.db, user_id(client, alice.email), True)
    page = await alice.get("/admin/backups", headers={"accept": "text/html"})
    assert page.status_code == 200 and "No backups yet" in page.text
    r = await alice.post("/admin/backups", follow_redirects=False)
    assert r.status_code == 303 and "done=reelforge-" in r.headers["location"]
    page = await alice.get(r.headers["location"], headers={"accept": "text/html"})
    name = r.headers["location"].split("done=")[1]
    assert name in page.text and "was written" in page.text
    # the token route is for this machine only: the test client is not a loopback address
    assert (await alice.post("/admin/backups/run",
                             headers={"authorization": f"Bearer {TOKEN}"})).status_code == 404
    assert (await alice.get("/admin", headers={"accept": "text/html"})).text.count(
        "Back up now") == 1
