"""Queries on `backup_state:main`: the lease that lets one process at a time make a backup
(a conditional UPDATE, as the job driver claims jobs), and when the last one finished."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.db.connection import Database, rid

STATE = rid("backup_state", "main")
# After a failed scheduled backup, the next try waits this long (not every minute).
RETRY_AFTER = "15m"


async def acquire(db: Database, owner: str, lease_s: float,
                  due_after_s: float | None = None) -> dict[str, Any] | None:
    """Take the lease for `lease_s` seconds; None when another process holds it. With
    `due_after_s` (the schedule), also None unless the last backup finished that long ago
    and no failed one was tried within RETRY_AFTER."""
    rows = await db.write(
        """
        BEGIN;
        UPSERT $state MERGE {} RETURN NONE;
        LET $won = (UPDATE $state SET lease_owner = $owner,
                lease_until = time::now() + type::duration($lease)
            WHERE (lease_until = NONE OR lease_until < time::now())
                AND ($due = NONE OR (
                    (last_at = NONE OR last_at < time::now() - type::duration($due))
                    AND (failed_at = NONE
                         OR failed_at < time::now() - type::duration($retry))))
            RETURN AFTER);
        RETURN $won[0];
        COMMIT;
        """,
        {"state": STATE, "owner": owner, "lease": f"{int(lease_s * 1000)}ms",
         "due": f"{int(due_after_s * 1000)}ms" if due_after_s is not None else None,
         "retry": RETRY_AFTER},
    )
    won: dict[str, Any] | None = rows[-1]
    return won


async def renew(db: Database, owner: str, lease_s: float) -> bool:
    rows = await db.write_one(
        "UPDATE $state SET lease_until = time::now() + type::duration($lease) "
        "WHERE lease_owner = $owner RETURN VALUE id",
        {"state": STATE, "owner": owner, "lease": f"{int(lease_s * 1000)}ms"})
    return bool(rows)


async def finish(db: Database, owner: str, *, at: datetime | None = None,
                 name: str | None = None, error: str | None = None) -> None:
    """Hand the lease back, recording the backup made (`at`, `name`) or the `error`."""
    if error is None:
        sql = ("UPDATE $state SET lease_owner = NONE, lease_until = NONE, last_at = $at, "
               "last_name = $name, failed_at = NONE, last_error = NONE "
               "WHERE lease_owner = $owner RETURN NONE")
    else:
        sql = ("UPDATE $state SET lease_owner = NONE, lease_until = NONE, "
               "failed_at = time::now(), last_error = $error "
               "WHERE lease_owner = $owner RETURN NONE")
    await db.write(sql, {"state": STATE, "owner": owner, "at": at, "name": name,
                         "error": error})


async def state(db: Database) -> dict[str, Any] | None:
    row: dict[str, Any] | None = await db.read_one("SELECT * FROM ONLY $state",
                                                   {"state": STATE})
    return row
