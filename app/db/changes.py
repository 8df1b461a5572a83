"""Rows of the database's change feed (SHOW CHANGES), read without the SDK's RecordID
leaving app/db/: which table a changed record is in, and a job's change as a record."""

from __future__ import annotations

from typing import Any

from surrealdb import RecordID

from app.db.records import VideoJob, decode


def table_of(record: dict[str, Any]) -> str:
    rid = record.get("id")
    return rid.table_name if isinstance(rid, RecordID) else ""


def key_of(record: dict[str, Any]) -> str:
    rid = record.get("id")
    return str(rid.id) if isinstance(rid, RecordID) else str(rid)


def job_of(record: dict[str, Any]) -> VideoJob:
    """A video_job's state as the change feed brought it."""
    return decode(record, VideoJob)
