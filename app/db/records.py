"""The shape of each table's rows, decoded once where they come in (app/db/).

Outside app/db/ a row is one of these Structs: attributes instead of string keys, record
ids as plain strings (`job.id`, `job.owner_id`), a job's status as the `Status` enum and
times as datetimes. The SDK's `RecordID` stays inside app/db/. Fields a query adds to a row
(`template_name` on a library item, `owner_email` on an admin listing) are declared with a
default, so the same Struct reads the plain row and the enriched one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar, overload

import msgspec
from surrealdb import RecordID

from app.jobs.states import Status

R = TypeVar("R", bound=msgspec.Struct)


class Record(msgspec.Struct, kw_only=True):
    """Every row has an id: the record key as a string (`user:abc` → "abc")."""
    id: str


# -- people and money ------------------------------------------------------------------


class User(Record, kw_only=True):
    email: str
    password_hash: str = ""
    balance: int = 0
    reserved: int = 0
    active_jobs: int = 0
    admin: bool = False
    created_at: datetime | None = None
    rev: int = 0  # counts writes (scripts/schema.surql): a newer state has a higher one

    @property
    def available(self) -> int:
        """What the person can spend now: the balance less what active jobs hold."""
        return self.balance - self.reserved


class LedgerEntry(Record, kw_only=True):
    owner_id: str = msgspec.field(name="owner")
    amount: int
    reason: str
    job: str | None = None
    created_at: datetime


# -- the catalogue ------------------------------------------------------------------------


class TemplateVariable(msgspec.Struct, kw_only=True):
    name: str
    label: str | None = None
    required: bool = False
    max_length: int | None = msgspec.field(default=None, name="maxLength")
    default: str | None = None
    placeholder: str | None = None

    @property
    def shown_label(self) -> str:
        return self.label or self.name


class Template(Record, kw_only=True):
    slug: str
    name: str
    description: str
    prompt: str
    variables: list[TemplateVariable] = msgspec.field(default_factory=list)
    endpoint: str
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    credits: int
    typical_seconds: int = 120
    preview: str | None = None
    position: int = 0
    active: bool = True


# -- files --------------------------------------------------------------------------------


class LibraryItem(Record, kw_only=True):
    owner_id: str = msgspec.field(name="owner")
    key: str
    kind: Literal["image", "video"]
    content_type: str
    size: int = 0
    name: str | None = None
    job: str | None = None
    poster_key: str | None = None
    removed: bool | None = None
    created_at: datetime
    template_name: str | None = None  # a video's template (app/db/library.py ITEM)


# -- jobs -------------------------------------------------------------------------------


class VideoJob(Record, kw_only=True):
    owner_id: str = msgspec.field(name="owner")
    template: str
    template_name: str
    start_key: str
    variables: dict[str, str] = msgspec.field(default_factory=dict)
    prompt: str
    provider: str
    endpoint: str
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    typical_seconds: int = 120
    provider_request_id: str | None = None
    webhook: bool = False
    status: Status
    credits: int
    queue_position: int | None = None
    last_log: str | None = None
    error: str | None = None
    cancel_requested: bool = False
    provider_done: bool = False
    attempts: int = 0
    checks: int = 0
    due_at: datetime
    lease_owner: str | None = None
    lease_until: datetime | None = None
    deadline_at: datetime
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result_key: str | None = None
    result_size: int | None = None
    poster_key: str | None = None
    announced: bool = False
    retried_as: str | None = None
    retry_of: str | None = None
    batch: str | None = None
    row: int | None = None
    rev: int = 0
    owner_email: str | None = None  # on admin listings (app/db/jobs.py list_all)


class DueJob(Record, kw_only=True):
    """A pending job as the driver's fair pick sees it (app/db/jobs.py `_due_fairly`)."""
    owner_id: str = msgspec.field(name="owner")
    due_at: datetime
    batch: str | None = None
    lease_until: datetime | None = None


class NewJob(msgspec.Struct, kw_only=True):
    """What a new job is recorded with (app/jobs/service.py builds it; app/db/jobs.py and
    app/db/batches.py add the owner, and a batch row its batch)."""
    template: str
    template_name: str
    start_key: str
    variables: dict[str, str] = msgspec.field(default_factory=dict)
    prompt: str
    provider: str
    endpoint: str
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    typical_seconds: int = 120
    credits: int
    status: Status = Status.PENDING
    deadline_at: datetime
    created_at: datetime
    updated_at: datetime
    due_at: datetime
    row: int | None = None

    def content(self) -> dict[str, Any]:
        """The record's fields for a CREATE … CONTENT (unset options left out: NONE)."""
        return {k: v for k, v in msgspec.structs.asdict(self).items() if v is not None}


class JobEvent(Record, kw_only=True):
    job: str
    from_status: str | None = msgspec.field(default=None, name="from")
    to: str
    reason: str | None = None
    at: datetime


class RunningBatch(Record, kw_only=True):
    """A batch in the progress notice (app/db/batches.py `running`); `left`, its rows still
    running, is counted by the caller from the jobs it has."""
    name: str
    total: int
    created_at: datetime
    left: int = 0


class Batch(Record, kw_only=True):
    owner_id: str = msgspec.field(name="owner")
    name: str
    template: str
    template_name: str
    start_key: str
    jobs: list[str] = msgspec.field(default_factory=list)
    created_at: datetime
    rev: int = 0


# -- decoding ---------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A row as it came from the SDK with every RecordID made its key (a string), inside
    lists and objects too."""
    if isinstance(value, RecordID):
        return str(value.id)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


@overload
def decode(row: None, as_type: type[R]) -> None: ...
@overload
def decode(row: dict[str, Any], as_type: type[R]) -> R: ...
def decode(row: dict[str, Any] | None, as_type: type[R]) -> R | None:
    """One row as `as_type` (None stays None). A row that does not fit is a bug in a query
    or the schema, and raises msgspec.ValidationError naming the field."""
    if row is None:
        return None
    return msgspec.convert(plain(row), as_type, strict=False)


def decode_all(rows: list[dict[str, Any]] | None, as_type: type[R]) -> list[R]:
    return [msgspec.convert(plain(r), as_type, strict=False) for r in rows or []]
