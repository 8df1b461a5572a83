"""Provider traffic: requests the fal queue receives per job, for M jobs of a known duration
each watched by V open pages (V in 1, 10, 100), with and without webhooks, against an
emulation of the old polling design, all in the same run.

One fake fal (its own process; every job is queued for a quarter of `--duration` and runs
for the rest) serves three designs at once:
* `webhook`: the app with PUBLIC_BASE_URL pointing at itself, so the fake delivers signed
  webhooks (FAL_WEBHOOK_JWKS_URL is the fake's JWKS, SSL_CERT_FILE its CA);
* `polling`: the app without a webhook (its default: a status check every 10 s);
* `old`: the old design, emulated: every open page polls every `--poll` s and each poll is
  one fal status request (made with the app's own FalProvider against the fake); the poll
  that sees the job done fetches the result and the video, as the old status endpoint did.
For the app, a page is an open /events stream of the job's owner, and (unless
`--page-poll 0`) it also reads GET /api/templates/video/status every `--page-poll` s, which
must not cause any provider traffic. Each job has its own account; requests are matched to
jobs through a unique word in the prompt. Every design and every V runs concurrently.

Counted per job: queue API requests (submit, status, result, cancel), of which status, and
downloads of the video file (fal's CDN, listed apart). Targets: with webhooks ≤ 3 queue
requests per job for a 60 s job; without ≤ ⌈duration / 10 s⌉ + 2; both independent of V.

    .venv/bin/python scripts/bench/provider_traffic.py                 # 60 s jobs, M=3
    .venv/bin/python scripts/bench/provider_traffic.py --quick         # 20 s jobs, M=2

Prints a table and writes bench-results/provider_traffic.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import tempfile
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any

import harness

STATUS_INTERVAL = 10.0  # app/jobs/schedule.py, fal's default
QUEUE_KINDS = ("submit", "status", "result", "cancel")


def token(design: str, pages: int, k: int) -> str:
    return f"tok{design}v{pages}j{k}x"


async def app_design(design: str, server: harness.AppServer, levels: list[int], jobs: int,
                     page_poll: float, deadline: float) -> dict[str, Any]:
    """Open V pages per job, submit, keep the pages until every job is final."""
    accounts = await harness.signup_many(server.url, jobs * len(levels), f"{design}p",
                                         concurrency=6)
    streams: list[harness.EventStream] = []
    tasks: list[asyncio.Task] = []
    jobs_out: dict[str, dict[str, Any]] = {}
    polls = {"count": 0}
    try:
        plan = []
        for li, v in enumerate(levels):
            for k in range(jobs):
                plan.append((v, k, accounts[li * jobs + k]))
        for v, _k, acc in plan:
            streams += await harness.open_event_streams(acc, v, server.port)
        for v, k, acc in plan:
            r = await acc.submit({"BRAND": token(design, v, k), "MODEL": "S1"})
            if r.status_code != 202:
                raise RuntimeError(f"{design} submit: {r.status_code} {r.text[:200]}")
            jobs_out[token(design, v, k)] = {"pages": v, "job_id": r.json()["jobId"],
                                             "account": acc, "status": "pending"}

        async def page(acc: harness.Account, job_id: str) -> None:
            at = time.monotonic() + random.uniform(0, page_poll)
            while time.time() < deadline:
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                at += page_poll  # a fixed cadence: a late poll does not push the next back
                r = await acc.http.get("/api/templates/video/status", params={"jobId": job_id})
                polls["count"] += 1
                if r.json().get("status") in ("completed", "failed", "canceled"):
                    return

        if page_poll > 0:
            for j in jobs_out.values():
                tasks += [asyncio.create_task(page(j["account"], j["job_id"]))
                          for _ in range(j["pages"])]
        while time.time() < deadline:
            pending = 0
            for j in jobs_out.values():
                if j["status"] not in ("completed", "failed", "canceled"):
                    body = (await j["account"].http.get("/api/templates/video/status",
                                                        params={"jobId": j["job_id"]})).json()
                    j["status"] = body["status"]
                    pending += j["status"] not in ("completed", "failed", "canceled")
            if not pending:
                break
            await asyncio.sleep(1.0)
        events = sum(s.events for s in streams)
        alive = sum(1 for s in streams if not s.closed.done())
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in streams:
            s.close()
        for a in accounts:
            await a.aclose()
    return {"jobs": {tok: {"pages": j["pages"], "status": j["status"]}
                     for tok, j in jobs_out.items()},
            "streams": len(streams), "streams_alive_at_end": alive, "events_received": events,
            "page_status_reads": polls["count"]}


async def old_design(levels: list[int], jobs: int, poll: float, deadline: float,
                     image: str) -> dict[str, Any]:
    """Every page polls fal through the status endpoint of old: one status request per poll;
    the poll that sees the job done fetches the result and downloads the video."""
    from app.providers.base import SubmitRequest
    from app.providers.fal import FalProvider

    template = next(t for t in json.loads((harness.ROOT / "scripts/templates.json").read_text())
                    if t["slug"] == harness.TEMPLATE)
    endpoint = template["endpoint"]
    # The fake fal's env (FakeFal.env()) names the hosts its results are served from.
    hosts = os.environ.get("ALLOWED_RESULT_HOSTS", "127.0.0.1,localhost").split(",")
    provider = FalProvider(key=os.environ["FAL_KEY"], allowed_result_hosts=hosts)
    out: dict[str, dict[str, Any]] = {}
    polls = {"count": 0}

    async def page(rid: str) -> None:
        at = time.monotonic() + random.uniform(0, poll)
        while time.time() < deadline:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            at += poll  # a fixed cadence: a late poll does not push the next back
            st = await provider.status(endpoint, rid)
            polls["count"] += 1
            if st.state == "completed":
                # The whole video is read (one result request, one download) and dropped:
                # only fal's requests are counted, so nothing need be written.
                async with aclosing(provider.stream_result(endpoint, rid, 500 * harness.MB)
                                    ) as chunks:
                    async for _chunk in chunks:
                        pass
                return

    tasks = []
    try:
        for v in levels:
            for k in range(jobs):
                tok = token("old", v, k)
                prompt = template["prompt"].replace("{{BRAND}}", tok).replace("{{MODEL}}", "S1")
                rid = await provider.submit(SubmitRequest(
                    endpoint=endpoint, prompt=prompt, image_url=image,
                    parameters=dict(template.get("parameters") or {})))
                out[tok] = {"pages": v, "request_id": rid}
                tasks += [asyncio.create_task(page(rid)) for _ in range(v)]
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await provider.aclose()
    return {"jobs": out, "page_polls": polls["count"]}


def _old_main(conn, levels: list[int], jobs: int, poll: float, deadline: float,
              image: str) -> None:
    """The old-design emulation in a process of its own, so that its polls keep their
    cadence however busy the pages of the app designs keep this process."""
    conn.send(harness.run(old_design(levels, jobs, poll, deadline, image)))
    conn.close()


async def old_design_process(levels: list[int], jobs: int, poll: float, deadline: float,
                             image: str) -> dict[str, Any]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_old_main, args=(child, levels, jobs, poll, deadline, image),
                       daemon=True)
    proc.start()
    try:
        return await asyncio.to_thread(parent.recv)
    finally:
        proc.join(30)


def _per_job(fake_jobs: dict[str, dict[str, Any]], counts: dict[str, dict[str, int]],
             tokens: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """token → counts of the fal request whose prompt carries that token."""
    out = {}
    for rid, j in fake_jobs.items():
        prompt = j.get("prompt") or ""
        for tok in tokens:
            if tok in prompt:
                c = counts.get(rid, {})
                out[tok] = {"request_id": rid, "counts": c,
                            "queue": sum(c.get(k, 0) for k in QUEUE_KINDS),
                            "status": c.get("status", 0), "video": c.get("video", 0)}
    return out


async def bench(args) -> dict[str, Any]:
    levels = args.pages
    duration = args.duration
    queue_time = round(duration / 4, 3)
    fake = harness.FakeFalProcess(queue_time=queue_time, run_time=duration - queue_time).start()
    os.environ.update(fake.env())  # for the old-design emulation in this process
    servers = {}
    for design in ("webhook", "polling"):
        data_dir = Path(tempfile.mkdtemp(prefix=f"bench-traffic-{design}-"))
        server = harness.AppServer({}, name=design)
        extra = {"PUBLIC_BASE_URL": server.url} if design == "webhook" else {}
        server.env = harness.base_env(data_dir, VIDEO_PROVIDER="fal", STORAGE="local",
                                      SIGNUP_CREDITS=10**6, **fake.env(), **extra)
        servers[design] = server
    try:
        for s in servers.values():
            s.start()
            print(f"{s.name} server pid {s.pid} at {s.url}", flush=True)
        # Run for the job's duration, plus the webhook design's safety check if it falls
        # within a few seconds of the end, plus time to finish.
        deadline = time.time() + duration + 90
        image = "data:image/png;base64," + __import__("base64").b64encode(
            harness.png_bytes()).decode()
        t0 = time.time()
        results = await asyncio.gather(
            app_design("webhook", servers["webhook"], levels, args.jobs, args.page_poll,
                       deadline),
            app_design("polling", servers["polling"], levels, args.jobs, args.page_poll,
                       deadline),
            old_design_process(levels, args.jobs, args.poll, deadline, image),
        )
        wall = time.time() - t0
        await asyncio.sleep(args.linger)  # anything late (a safety check) is counted too
        counts = await fake.acall("counts_by_job")
        fake_jobs = await fake.acall("jobs")
        by_kind = await fake.acall("counts_by_kind")
        webhooks = await fake.acall("webhook_stats")
    finally:
        for s in servers.values():
            s.stop()
        fake.stop()

    designs = dict(zip(("webhook", "polling", "old"), results, strict=True))
    rows = []
    for name, res in designs.items():
        per = _per_job(fake_jobs, counts, res["jobs"])
        for v in levels:
            toks = [t for t, j in res["jobs"].items() if j["pages"] == v]
            got = [per[t] for t in toks if t in per]
            rows.append({
                "design": name, "pages": v, "jobs": len(toks), "matched": len(got),
                "final": [res["jobs"][t].get("status") for t in toks] if name != "old" else None,
                "queue_per_job_mean": round(sum(g["queue"] for g in got) / max(1, len(got)), 2),
                "queue_per_job_max": max((g["queue"] for g in got), default=0),
                "status_per_job_mean": round(sum(g["status"] for g in got) / max(1, len(got)),
                                             2),
                "video_per_job_mean": round(sum(g["video"] for g in got) / max(1, len(got)), 2),
                "counts": [g["counts"] for g in got],
            })
    limit_polling = math.ceil(duration / STATUS_INTERVAL) + 2
    for r in rows:  # what the old design costs when every page keeps its 3 s cadence
        if r["design"] == "old":
            r["ideal_queue_per_job"] = 1 + r["pages"] * (math.ceil(duration / args.poll) + 1)

    def rows_of(design: str) -> list[dict[str, Any]]:
        return [r for r in rows if r["design"] == design]

    def spread(design: str) -> float:
        means = [r["queue_per_job_mean"] for r in rows_of(design)]
        return round(max(means) - min(means), 2)

    webhook_max = max(r["queue_per_job_max"] for r in rows_of("webhook"))
    polling_max = max(r["queue_per_job_max"] for r in rows_of("polling"))
    note = "" if duration == 60 else f"the target is for a 60 s job; this run used {duration} s"
    targets = [
        harness.target("with webhooks: queue requests per job (max)", webhook_max, 3, "<=",
                       note=note),
        harness.target("without webhooks: queue requests per job (max)", polling_max,
                       limit_polling, "<=", note=f"⌈{duration:g}/10⌉ + 2"),
        harness.target("with webhooks: spread of the mean over V", spread("webhook"), 0.5, "<="),
        harness.target("without webhooks: spread of the mean over V", spread("polling"), 0.5,
                       "<="),
    ]
    return {
        "config": {"duration": duration, "queue_time": queue_time, "jobs_per_level": args.jobs,
                   "pages": levels, "old_poll_s": args.poll, "page_poll_s": args.page_poll,
                   "status_interval": STATUS_INTERVAL},
        "wall_s": round(wall, 1), "rows": rows, "fal_requests_by_kind": by_kind,
        "webhooks": webhooks,
        "app_pages": {k: {x: v for x, v in designs[k].items() if x != "jobs"}
                      for k in ("webhook", "polling")},
        "old_page_polls": designs["old"]["page_polls"],
        "targets": targets,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds each job takes at fal")
    p.add_argument("--jobs", type=int, default=3, help="jobs (M) per design and V")
    p.add_argument("--pages", type=int, nargs="+", default=[1, 10, 100], help="V values")
    p.add_argument("--poll", type=float, default=3.0, help="old design: seconds between polls")
    p.add_argument("--page-poll", type=float, default=3.0,
                   help="app pages also read the status API this often (0: /events only)")
    p.add_argument("--linger", type=float, default=5.0,
                   help="seconds to keep counting after the last job ended")
    p.add_argument("--quick", action="store_true", help="20 s jobs, M=2, V in 1 and 10")
    p.add_argument("--json", help="output path (default bench-results/provider_traffic.json)")
    args = p.parse_args()
    if args.quick:
        args.duration, args.jobs, args.pages = 20.0, 2, [1, 10]
    harness.raise_nofile()
    out = harness.run(bench(args))
    print()
    print(harness.table(
        [(r["design"], r["pages"], f"{r['matched']}/{r['jobs']}", r["queue_per_job_mean"],
          r["queue_per_job_max"], r["status_per_job_mean"], r["video_per_job_mean"])
         for r in out["rows"]],
        ["design", "V pages/job", "jobs", "queue req/job", "max", "status/job",
         "video downloads/job"]))
    ideal = {r["pages"]: r["ideal_queue_per_job"] for r in out["rows"] if r["design"] == "old"}
    print(f"old design with every poll on time: {ideal} queue requests per job (by V)")
    print(f"fal requests by kind: {out['fal_requests_by_kind']}; webhooks: {out['webhooks']}")
    print(f"app pages: {out['app_pages']}")
    print()
    print(harness.targets_table(out["targets"]))
    print(f"wrote {harness.write_results('provider_traffic', out, args.json)}")


if __name__ == "__main__":
    main()
