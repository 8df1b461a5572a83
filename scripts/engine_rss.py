"""How much resident memory the embedded SurrealDB engine (surrealkv) takes per stored record,
and how long a write takes as the store grows, with no app around it: 4 (or BATCHES) ×
1,000 records, each written once and another updated 10 times (about what one video job
costs: the job, its timeline events, ledger and library rows).

    .venv/bin/python scripts/engine_rss.py [BATCHES]

Used by docs/RELIABILITY.md to tell the engine's growth from the app's in the soak."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.db.connection import Database  # noqa: E402
from app.db.schema import apply_schema  # noqa: E402
from app.settings import Settings  # noqa: E402

BATCHES = int(sys.argv[1]) if len(sys.argv) > 1 else 4


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0


async def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="engine-rss-"))
    db = Database(Settings(data_dir=data, database_url=None))  # surrealkv in `data`
    await db.connect()
    await apply_schema(db)
    base = rss_kib()
    for batch in range(BATCHES):
        began = time.perf_counter()
        for i in range(1000):
            key = f"j{batch}_{i}"
            await db.write("CREATE type::thing('job_event', $id) CONTENT "
                           "{ job: $id, to: 'pending', reason: 'x' }", {"id": key})
            for version in range(10):
                await db.write("UPSERT type::thing('kv', $id) CONTENT { v: $v, pad: $pad }",
                               {"id": key, "v": version, "pad": "x" * 800})
        per_write = (time.perf_counter() - began) / 11_000 * 1000
        n = (batch + 1) * 1000
        grown = rss_kib() - base
        print(f"{n} records: RSS +{grown} KiB ({grown / n:.1f} KiB per record), "
              f"{per_write:.2f} ms per write in this batch", flush=True)
    await db.close()
    shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
