"""The JSON API's answers are the Structs of app/web/answers.py: /schema is written from
them, and what goes over the wire is what they encode (absent vs null included)."""

from __future__ import annotations

import msgspec

from app.web import answers
from app.web.request_docs import SubmitBody
from tests.helpers import Account

VARS = {"BRAND": "Aurora", "MODEL": "S1"}


def _fields(struct: type[msgspec.Struct]) -> tuple[set[str], set[str]]:
    """A Struct's wire names, and those without a default (always sent)."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    return ({f.encode_name for f in info.fields},
            {f.encode_name for f in info.fields if f.required})


async def test_the_document_is_written_from_the_answer_structs(idle):
    doc = (await idle.get("/schema/openapi.json")).json()
    components = doc["components"]["schemas"]
    for struct in (answers.Me, answers.TemplateOut, answers.TemplateVariable,
                   answers.LibraryItem, answers.Uploaded, answers.Deleted,
                   answers.SubmitAccepted, answers.JobActive, answers.JobCompleted,
                   answers.JobEnded, answers.JobOut, answers.JobList, answers.Health,
                   answers.WebhookAck, answers.ApiError):
        names, required = _fields(struct)
        schema = components[struct.__name__]
        assert set(schema["properties"]) == names, struct
        assert set(schema.get("required", [])) == required, struct
    ops = doc["paths"]
    status = ops["/api/templates/video/status"]["get"]["responses"]["200"]
    refs = status["content"]["application/json"]["schema"]["oneOf"]
    assert {r["$ref"].rsplit("/", 1)[1] for r in refs} == {"JobActive", "JobCompleted",
                                                          "JobEnded"}
    # the submission's body, read by the handler itself, is documented from SubmitBody
    body = ops["/api/templates/video"]["post"]["requestBody"]["content"]["application/json"]
    names, required = _fields(SubmitBody)
    assert set(body["schema"]["properties"]) == names == set(body["schema"]["required"])


async def test_a_replayed_submission_is_the_first_answer_byte_for_byte(idle):
    person = await Account.signup(idle, "replay@example.com")
    image = await person.upload()
    send = {"templateSlug": "car-commercial", "startKey": image, "variables": VARS}
    first = await person.post("/api/templates/video", headers={"Idempotency-Key": "k"},
                              json=send)
    again = await person.post("/api/templates/video", headers={"Idempotency-Key": "k"},
                              json=send)
    assert first.status_code == again.status_code == 202, again.text
    assert again.content == first.content
    assert list(first.json()) == ["jobId", "status", "credits", "message"]


async def test_fields_unknown_are_absent_and_unset_ones_null(idle):
    person = await Account.signup(idle, "shapes@example.com")
    image = await person.upload()
    job_id = (await person.submit(image)).json()["jobId"]
    status = (await person.get("/api/templates/video/status",
                               params={"jobId": job_id})).json()
    assert status == {"status": "pending", "message": "Starting…"}  # no queuePosition &c.
    (job,) = (await person.get("/api/jobs")).json()["jobs"]
    assert (job["finishedAt"], job["key"], job["error"]) == (None, None, None)
    assert (await idle.get("/health")).content == b'{"status":"ok"}'
