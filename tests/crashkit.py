"""Running the real server as a child process that can be killed mid-job and restarted on
the same data directory (embedded surrealkv), for the crash tests and the crash matrix."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.db import users as users_db
from app.db.connection import Database, rid
from app.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    data_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    # what runs the server; e.g. tests.fakes.db_conflicts wraps `python -m app serve`
    command: tuple[str, ...] = ("-m", "app", "serve")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, crash_at: str | None = None, timeout: float = 30) -> ServerProcess:
        env = {**os.environ, **self.env, "DATA_DIR": str(self.data_dir), "PORT": str(self.port),
               "ALLOWED_HOSTS": "127.0.0.1,localhost"}
        if "DATABASE_URL" not in self.env:
            env.pop("DATABASE_URL", None)  # the embedded surrealkv store in DATA_DIR
        env.pop("REELFORGE_CRASH_AT", None)
        if crash_at:
            env["REELFORGE_CRASH_AT"] = crash_at
        log = open(self.data_dir / f"server-{time.time_ns()}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, *self.command], env=env,
                                     stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited at start ({self.proc.returncode})")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("server did not start")

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, as a process manager would; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Browserless:
    """A person using the JSON API over real HTTP."""

    def __init__(self, base_url: str):
        self.http = httpx.Client(base_url=base_url, timeout=15)

    def signup(self, email: str, password: str = "correct-horse-1") -> None:
        self.http.get("/signup")
        r = self.http.post("/signup", data={"email": email, "password": password,
                                            "_csrf_token": self.http.cookies["csrftoken"]})
        assert r.status_code == 303, r.text

    def post(self, url: str, **kw) -> httpx.Response:
        return self.http.post(url, headers={"x-csrftoken": self.http.cookies["csrftoken"]}, **kw)

    def upload(self, data: bytes) -> str:
        r = self.post("/api/library", files={"file": ("start.png", data, "image/png")})
        assert r.status_code == 201, r.text
        return r.json()["key"]

    def submit(self, key: str) -> str:
        r = self.post("/api/templates/video", json={
            "templateSlug": "car-commercial", "startKey": key,
            "variables": {"BRAND": "Aurora", "MODEL": "S1"}})
        assert r.status_code == 202, r.text
        return r.json()["jobId"]

    def status(self, job_id: str) -> dict:
        return self.http.get("/api/templates/video/status", params={"jobId": job_id}).json()

    def wait_final(self, job_id: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = self.status(job_id)
            if body["status"] in ("completed", "failed", "canceled"):
                return body
            if time.monotonic() > deadline:
                return body
            time.sleep(0.1)


class EventStreamReader(threading.Thread):
    """Reads one /events stream of a running server in a thread, for at most `seconds`:
    `status` (the HTTP status), `text` (everything received), `ended_by_server` (the server
    closed it, rather than the reader stopping)."""

    def __init__(self, base_url: str, cookies: httpx.Cookies, seconds: float,
                 path: str = "/events"):
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=base_url, cookies=cookies,
                                   timeout=httpx.Timeout(5.0, read=seconds + 5))
        self.seconds, self.path = seconds, path
        self.status: int | None = None
        self.text = ""
        self.ended_by_server = False
        self.ended_at: float | None = None
        self.opened = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        try:
            with self.client.stream("GET", self.path) as r:
                self.status = r.status_code
                self.opened.set()
                for chunk in r.iter_text():
                    self.text += chunk
                    if self.stop.is_set() or time.monotonic() > deadline:
                        break
                else:
                    self.ended_by_server = True
        except httpx.HTTPError:
            self.ended_by_server = True
        finally:
            self.ended_at = time.monotonic()
            self.opened.set()
            self.client.close()


@dataclass
class Books:
    """What the database says about one person after the server stopped."""

    balance: int
    reserved: int
    active_jobs: int
    ledger_sum: int
    charges: int
    video_items: int


def read_books(data_dir: Path, email: str) -> Books:
    async def read() -> Books:
        db = Database(Settings(data_dir=data_dir, database_url=None))
        await db.connect()
        try:
            user = await users_db.by_email(db, email)
            uid = user.id
            charges = await db.read_one(
                "SELECT VALUE id FROM ledger WHERE owner = $u AND reason = 'video'",
                {"u": rid("user", user.id)})
            videos = await db.read_one(
                "SELECT VALUE id FROM library WHERE owner = $u AND kind = 'video'",
                {"u": rid("user", user.id)})
            return Books(user.balance, user.reserved, user.active_jobs,
                         await users_db.ledger_sum(db, uid), len(charges), len(videos))
        finally:
            await db.close()

    return asyncio.run(read())
