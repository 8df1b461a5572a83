"""Small helpers the tests share: an account with its own client, images, waiting."""

from __future__ import annotations

import asyncio
import io
import time
from dataclasses import dataclass
from typing import Any

from PIL import Image


def png_bytes(size=(320, 180), color=(200, 90, 40), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


@dataclass
class Account:
    client: Any
    email: str

    @classmethod
    async def signup(cls, client, email: str, password: str = "correct-horse-1") -> Account:
        await client.get("/signup")
        r = await client.post("/signup", data={
            "email": email, "password": password, "_csrf_token": client.cookies.get("csrftoken")},
            follow_redirects=False)
        assert r.status_code == 303, r.text
        return cls(client, email)

    @property
    def csrf(self) -> dict[str, str]:
        return {"x-csrftoken": self.client.cookies.get("csrftoken")}

    async def get(self, url: str, **kw):
        return await self.client.get(url, **kw)

    async def post(self, url: str, **kw):
        return await self.client.post(url, headers={**self.csrf, **kw.pop("headers", {})}, **kw)

    async def delete(self, url: str, **kw):
        return await self.client.delete(url, headers={**self.csrf, **kw.pop("headers", {})}, **kw)

    async def upload(self, data: bytes | None = None, name: str = "start.png") -> str:
        files = {"file": (name, data or png_bytes(), "image/png")}
        r = await self.post("/api/library", files=files)
        assert r.status_code == 201, r.text
        return r.json()["key"]

    async def submit(self, start_key: str, template: str = "car-commercial",
                     variables: dict | None = None):
        return await self.post("/api/templates/video", json={
            "templateSlug": template, "startKey": start_key,
            "variables": {"BRAND": "Aurora", "MODEL": "S1"} if variables is None else variables})

    async def me(self) -> dict:
        return (await self.get("/api/me")).json()

    async def wait_status(self, job_id: str, done=("completed", "failed", "canceled"),
                          timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = (await self.get("/api/templates/video/status",
                                   params={"jobId": job_id})).json()
            if body["status"] in done or time.monotonic() > deadline:
                return body
            await asyncio.sleep(0.1)


def on_app(client, fn, *args):
    """Run `fn(*args)` (a coroutine function) on the app's own event loop. AsyncTestClient
    runs the app in a portal thread with its own loop; the app's locks and tasks live there."""
    return client.blocking_portal.call(fn, *args)
