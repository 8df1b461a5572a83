"""Counters that limit attempts (sign-in, sign-up), kept in the database so that every app
process counts together. A counter is a fixed window: `n` attempts since `since`; once the
window has passed, the next attempt starts a new one."""

from __future__ import annotations

from app.db.connection import Database, Thrown, rid

_HEAD = "BEGIN; LET $cutoff = time::now() - type::duration($window);"
_COUNT = "LET $c{i} = (SELECT VALUE IF since < $cutoff {{ 0 }} ELSE {{ n }} FROM ONLY $k{i}) ?? 0;"
_TAKE = "UPSERT $k{i} SET n = $c{i} + 1, since = IF $c{i} = 0 {{ time::now() }} ELSE {{ since }};"


async def reserve(db: Database, keys: list[str], limit: int, window_s: float) -> int | None:
    """Count one attempt against every key, atomically and only if none of them is at
    `limit` yet. Returns the highest count before this attempt, or None when refused (and
    then nothing was counted). Because the attempt is counted before it is made, a
    concurrent burst gets at most `limit` attempts through, across processes."""
    n = range(len(keys))
    worst = "math::max([" + ", ".join(f"$c{i}" for i in n) + "])"
    sql = "\n".join([
        _HEAD, *(_COUNT.format(i=i) for i in n),
        f"IF {worst} >= $limit {{ THROW \"throttled\" }};",
        *(_TAKE.format(i=i) for i in n),
        f"RETURN {worst}; COMMIT;",
    ])
    try:
        result = await db.write(sql, {
            "window": f"{int(window_s * 1000)}ms", "limit": limit,
            **{f"k{i}": rid("throttle", key) for i, key in enumerate(keys)},
        })
    except Thrown as exc:
        if exc.code == "throttled":
            return None
        raise
    return int(result[-1])


async def give_back(db: Database, keys: list[str]) -> None:
    """Undo one counted attempt (it turned out not to be a failure)."""
    await db.write("UPDATE $keys SET n = math::max([0, n - 1]) RETURN NONE",
                   {"keys": [rid("throttle", k) for k in keys]})


async def clear(db: Database, keys: list[str]) -> None:
    await db.write("DELETE $keys", {"keys": [rid("throttle", k) for k in keys]})


async def purge(db: Database, older_than_s: float) -> None:
    """Forget counters whose window ended long ago (housekeeping)."""
    await db.write("DELETE throttle WHERE since < time::now() - type::duration($age) RETURN NONE",
                   {"age": f"{int(older_than_s)}s"})
