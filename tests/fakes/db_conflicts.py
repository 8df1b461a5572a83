"""`python -m tests.fakes.db_conflicts serve`: the app, with a database that answers a share
of write transactions with SurrealDB's retryable "read or write conflict".

The embedded engine never reports conflicts to this app: app/db/connection.py runs every
write of one process under one asyncio lock, and the surrealkv directory is locked to one
process. A SurrealDB server does report them (concurrent writers to one record), and the
app retries the whole transaction with backoff (Database._retrying), and past that the
driver retries the step. This wrapper makes that path run on the embedded engine: before a
write transaction reaches the engine it is refused, with probability
REELFORGE_DB_CONFLICT_RATE (default 0.3), exactly as an aborted optimistic transaction
would be (nothing of it applied). Each injected conflict is logged to stderr as
`db_conflicts: injected`, so a test can count them in the server's log."""

from __future__ import annotations

import os
import random
import re
import sys

from app.db import connection

WRITES = re.compile(r"\b(UPDATE|CREATE|DELETE|INSERT|UPSERT|RELATE)\b", re.IGNORECASE)
_original_run = connection.Database._run
injected = 0  # conflicts injected in this process


def install(rate: float, seed: int | None = None) -> None:
    """From now on, refuse a write transaction with a conflict with probability `rate`."""
    rng = random.Random(seed)

    async def _run(self, sql, vars, timeout=None):
        global injected
        if WRITES.search(sql) and rng.random() < rate:
            injected += 1
            print("db_conflicts: injected", file=sys.stderr, flush=True)
            raise connection.Conflict(
                "Failed to commit transaction due to a read or write conflict. "
                "This transaction can be retried (injected by tests/fakes/db_conflicts.py)")
        return await _original_run(self, sql, vars, timeout)

    connection.Database._run = _run


def uninstall() -> None:
    connection.Database._run = _original_run


if __name__ == "__main__":
    from app.cli import main

    install(float(os.environ.get("REELFORGE_DB_CONFLICT_RATE", "0.3")))
    main()
