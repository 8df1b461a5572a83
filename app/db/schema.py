"""Applies scripts/schema.surql (idempotent)."""

from __future__ import annotations

from pathlib import Path

from app.db.connection import Database

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "scripts" / "schema.surql"


async def apply_schema(db: Database) -> None:
    await db.write(SCHEMA_PATH.read_text())
