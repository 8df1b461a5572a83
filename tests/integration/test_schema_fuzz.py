"""Contract fuzzing: schemathesis generates requests (valid and invalid) for every operation
in the app's own OpenAPI document (/schema/openapi.json: the JSON API, the fal webhook and
/health) and sends them to the real server (uvicorn in a subprocess, in-memory database,
the fake fal server as provider), signed in with a session and a CSRF token.

Every response must be a non-5xx whose status code, content type and body the document
declares. In the suite each operation gets FUZZ_EXAMPLES (default 12) examples per
generation mode; `bash scripts/fuzz.sh` runs the full campaign (FUZZ_EXAMPLES=400, over
2,000 requests) and writes its figures to bench-results/schema_fuzz.json."""

from __future__ import annotations

import json
import os
import time
import zlib
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.crashkit import Browserless, ServerProcess
from tests.fakes.fal_server import JobSpec
from tests.helpers import png_bytes

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
REPORT = os.environ.get("FUZZ_REPORT")  # where the full run writes its figures
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]

SENT: Counter = Counter()  # (method path, status) -> requests sent


class Live:
    def __init__(self, server: ServerProcess, person: Browserless, key: str):
        self.server = server
        self.person = person
        self.key = key  # an image in the person's library

    @property
    def auth_headers(self) -> dict[str, str]:
        cookies = self.person.http.cookies
        jar = "; ".join(f"{name}={cookies[name]}" for name in ("reelforge_session", "csrftoken"))
        return {"Cookie": jar, "x-csrftoken": cookies["csrftoken"]}


@pytest.fixture(scope="module")
def live(tmp_path_factory, fake_fal):
    fake_fal.reset()
    fake_fal.defaults = JobSpec(queue_time=0.2, run_time=0.3)
    server = ServerProcess(tmp_path_factory.mktemp("fuzz"), {
        **fake_fal.env(), "DATABASE_URL": "mem://", "VIDEO_PROVIDER": "fal",
        "STATUS_INTERVAL": "0.2", "MAX_ACTIVE_JOBS": "3",
    })
    server.env["PUBLIC_BASE_URL"] = server.url  # webhooks on: the fake fal calls the server
    server.start()
    try:
        person = Browserless(server.url)
        person.signup("fuzz@example.com")
        key = person.upload(png_bytes())
        person.wait_final(person.submit(key), timeout=30)  # a finished job to list and show
        person.submit(key)  # and one that may still be running
        started = time.monotonic()
        yield Live(server, person, key)
        if REPORT:
            _write_report(Path(REPORT), time.monotonic() - started)
    finally:
        server.stop()
        server.kill()


def _document() -> dict:
    """The app's OpenAPI document, built in-process at collection time (schemathesis's
    fixture-based lazy loading does not work with pytest 9); the live server's own copy is
    checked against it below."""
    from app.main import create_app
    from app.settings import Settings

    app = create_app(Settings(data_dir=Path(os.environ["DATA_DIR"]), database_url="mem://",
                              video_provider="fal", fal_key="fake",
                              public_base_url="http://127.0.0.1"))
    return app.openapi_schema.to_schema()


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
          suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate, Phase.shrink])
def test_every_operation_answers_as_documented(case, live):
    _aim_submission(case, live)
    response = case.call(base_url=live.server.url, headers=live.auth_headers, timeout=15)
    SENT[(f"{case.method.upper()} {case.path}", response.status_code)] += 1
    case.validate_response(response, checks=CHECKS)


def _aim_submission(case, live) -> None:
    """A generated startKey never names an image of the person's, so every submission would
    be a 404 and the accepting path would go unfuzzed: half of the valid submissions name a
    real template and image (keeping the generated variable values), and reach 202, or
    402/429 once credits or the active-job cap run out."""
    body = case.body
    if (case.operation.path != "/api/templates/video" or not isinstance(body, dict)
            or case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE
            or zlib.crc32(json.dumps(body, sort_keys=True, default=str).encode()) % 2):
        return
    values = [v for v in (body.get("variables") or {}).values() if isinstance(v, str)]
    case.body = {**body, "templateSlug": "car-commercial", "startKey": live.key,
                 "variables": {"BRAND": (values or ["Aurora"])[0][:40] or "Aurora",
                               "MODEL": (values[1:] or ["S1"])[0][:40] or "S1"}}


def test_the_document_covers_every_json_route(live):
    """The fuzzed document lists every JSON route (pages and the stream are left out)."""
    import httpx

    doc = httpx.get(live.server.url + "/schema/openapi.json", timeout=10).json()
    assert doc == json.loads(json.dumps(DOCUMENT))  # what was fuzzed is what is served
    ops = {f"{m.upper()} {p}" for p, item in doc["paths"].items() for m in item}
    assert ops == {
        "GET /api/me", "GET /api/templates", "GET /api/library", "POST /api/library",
        "DELETE /api/library", "POST /api/templates/video", "GET /api/templates/video/status",
        "POST /api/templates/video/cancel", "GET /api/jobs", "POST /api/webhooks/fal",
        "GET /health", "POST /api/batches", "GET /api/batches", "GET /api/batches/{batch_id}",
        "POST /api/batches/{batch_id}/cancel", "POST /api/batches/{batch_id}/retry-failed",
        "GET /api/batches/{batch_id}/download",
    }
    # JSON errors are {"error", "message", "field"?}
    error = doc["components"]["schemas"]["ApiError"]
    assert set(error["required"]) == {"error", "message"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "500" not in op["responses"], (method, path)
            if path.startswith("/api/") and path != "/api/templates":
                assert "401" in op["responses"] or path == "/api/webhooks/fal", (method, path)


def _write_report(path: Path, seconds: float) -> None:
    by_op: dict[str, dict[str, int]] = {}
    for (op, status), n in sorted(SENT.items()):
        by_op.setdefault(op, {})[str(status)] = n
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "examples_per_mode": EXAMPLES, "requests": sum(SENT.values()),
        "server_errors": sum(n for (_, s), n in SENT.items() if s >= 500),
        "seconds": round(seconds, 1), "schemathesis": schemathesis.__version__,
        "by_operation": by_op,
    }, indent=2) + "\n")
