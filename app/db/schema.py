"""Applies scripts/schema.surql, and against a server scripts/changefeeds.surql (both
idempotent)."""

from __future__ import annotations

from pathlib import Path

from app.db.connection import Database

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
SCHEMA_PATH = SCRIPTS / "schema.surql"
CHANGEFEEDS_PATH = SCRIPTS / "changefeeds.surql"


async def apply_schema(db: Database) -> None:
    await db.write(SCHEMA_PATH.read_text())
    if not db.embedded:
        await db.write(CHANGEFEEDS_PATH.read_text())
