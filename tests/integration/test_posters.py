"""Posters: a finished video's frame, taken at finalize with the bundled ffmpeg, stored next
to the video (local disk and S3), recorded on the library item and the job, served to the
owner only, and deleted with the video. A video that yields no frame still completes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from app.db import jobs as jobs_db
from app.db import library as library_db
from app.db.records import LibraryItem
from app.storage.posters import poster_key
from tests.fakes.s3_server import s3_server_fixture  # noqa: F401
from tests.integration.api_support import in_app, running_app, sharing, signup, user_id
from tests.integration.test_jobs_fal import fake as fake_fixture  # noqa: F401
from tests.integration.test_jobs_fal import fal_settings

fake = fake_fixture


async def _finished(account) -> tuple[str, dict]:
    key = await account.upload()
    job_id = (await account.submit(key)).json()["jobId"]
    final = await account.wait_status(job_id)
    assert final["status"] == "completed", final
    return job_id, final


def _records(client, email: str, video_key: str, job_id: str) -> tuple[LibraryItem, dict]:
    db = client.app.state.services.db
    item = in_app(client, library_db.get_owned, db, user_id(client, email), video_key)
    job = in_app(client, jobs_db.get, db, job_id)
    return item, job


def _is_jpeg_frame(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image.size


async def test_local_storage_poster_is_stored_served_and_deleted(tmp_path, s3_server, fake):
    settings = fal_settings(tmp_path, s3_server, storage="local")
    async with running_app(settings) as client:
        alice = await signup(client, "alice@example.com")
        job_id, final = await _finished(alice)
        item, job = _records(client, alice.email, final["key"], job_id)
        poster = poster_key(final["key"])
        assert item.poster_key == job.poster_key == poster
        assert item.template_name == job.template_name  # the tile's join
        path = settings.media_dir / poster
        assert path.is_file() and _is_jpeg_frame(path.read_bytes())[0] > 0

        served = await alice.get(f"/media/{poster}")
        assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
        async with sharing(client) as other:
            bob = await signup(other, "bob@example.com")
            assert (await bob.get(f"/media/{poster}")).status_code == 404

        # The public listing keeps its documented shape.
        listed = [i for i in (await alice.get("/api/library")).json() if i["kind"] == "video"]
        assert set(listed[0]) == {"key", "kind", "url", "createdAt"}

        r = await alice.delete("/api/library", params={"key": final["key"]})
        assert r.status_code == 200
        assert not path.exists() and not (settings.media_dir / final["key"]).exists()


async def test_s3_poster_is_stored_next_to_the_video_and_deleted_with_it(carol, fake, s3_server):
    job_id, final = await _finished(carol)
    poster = poster_key(final["key"])
    assert poster.endswith(f"/library/videos/{job_id}.poster.jpg")
    bucket = s3_server.client()
    body = bucket.get_object(Bucket=s3_server.bucket, Key=poster)
    assert body["ContentType"] == "image/jpeg"
    assert _is_jpeg_frame(body["Body"].read())[0] > 0
    item, job = _records(carol.client, carol.email, final["key"], job_id)
    assert item.poster_key == job.poster_key == poster

    assert (await carol.delete("/api/library", params={"key": final["key"]})).status_code == 200
    left = bucket.list_objects_v2(Bucket=s3_server.bucket, Prefix=final["key"].rsplit("/", 1)[0])
    assert [o["Key"] for o in left.get("Contents", [])] == []


async def test_a_video_without_a_frame_still_completes_without_a_poster(carol, fake):
    fake.next_jobs(1, video=b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4000)  # no frames
    job_id, final = await _finished(carol)
    item, job = _records(carol.client, carol.email, final["key"], job_id)
    assert item.poster_key is None and job.poster_key is None
    assert job.status == "completed" and job.result_key == final["key"]
    # Its tile still shows well: a neutral frame with the play icon, named and dated.
    page = (await carol.get("/")).text
    assert "tile-noposter" in page and 'aria-label="Play Car commercial video, ' in page


@pytest.fixture
async def carol(app_client):
    from tests.helpers import Account

    return await Account.signup(app_client, "carol@example.com")


@pytest.fixture
async def app_client(tmp_path, s3_server, fake):
    async with running_app(fal_settings(tmp_path, s3_server)) as client:
        yield client
