"""The Jinja environment and the fragment renderers shared by pages, API responses and
the event stream (one partial per stateful widget, rendered the same way everywhere)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

from jinja2 import Environment, FileSystemLoader, select_autoescape

from app.db.records import LibraryItem, RunningBatch, User, VideoJob
from app.db.templates import variable_labels
from app.jobs.progress import Durations, estimate, eta_text, typical_text
from app.jobs.service import is_rendered
from app.jobs.states import FINAL, Status, public_status

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"
SLOW_AFTER_SECONDS = 600  # the toast says "taking longer" after 10 minutes
_CREATED = re.compile(r'data-created="\d+"')


def precise_created(card: str, created_at: datetime) -> str:
    """A job card's data-created to the millisecond (the card partial writes whole epoch
    seconds): a page files a card that arrives late by it (static/app.js fileCard), and jobs
    made in the same second, a burst from the API, must still sort right."""
    return _CREATED.sub(f'data-created="{created_at.timestamp():.3f}"', card, count=1)


def _elapsed(job: VideoJob) -> int:
    end = job.finished_at or datetime.now(UTC)
    return max(0, int((end - job.created_at).total_seconds()))


def _fields(job: VideoJob) -> list[tuple[str, str]]:
    """The job's variables as (label, value), in the template's order; a variable the
    catalogue no longer knows keeps its name ("BRAND" -> "Brand")."""
    labels = variable_labels().get(job.template, {})
    values = job.variables
    names = [n for n in labels if n in values] + [n for n in values if n not in labels]
    return [(labels.get(n) or n.replace("_", " ").capitalize(), str(values[n]))
            for n in names if values[n] not in (None, "")]


def _job_view(job: VideoJob, durations: Durations | None = None) -> dict[str, Any]:
    """What the partials need of a job, computed in one place. `durations` holds the run
    times of past jobs (primed by the caller: rendering never queries)."""
    elapsed = _elapsed(job)
    status = job.status
    est = estimate(job, elapsed, datetime.now(UTC).timestamp(), durations)
    # A countdown only from the provider's progress or from history; the template's
    # figure is said as what it is ("usually about 2 min").
    pace = (eta_text(est["eta"]) if est["eta"] is not None and est["eta"] >= 1
            else "almost done" if est["eta"] is not None else typical_text(est["expected"]))
    return {
        "id": job.id, "status": status.value, "public_status": public_status(status.value),
        "template_name": job.template_name, "template": job.template,
        "variables": job.variables, "queue_position": job.queue_position,
        "last_log": job.last_log, "error": job.error,
        "credits": job.credits, "result_key": job.result_key,
        "start_key": job.start_key, "final": status in FINAL,
        # The provider has finished (finalizing, or its webhook said so): no more Cancel.
        "rendered": is_rendered(job),
        "elapsed": elapsed, "typical": int(est["expected"]),
        # Finalizing: the provider has finished; only saving is left.
        "progress": est["progress"] if status not in FINAL and status != Status.FINALIZING
        else 100,
        "progress_source": est["source"], "eta": est["eta"], "pace": pace,
        "slow_in": max(0, SLOW_AFTER_SECONDS - elapsed),
        "created_at": job.created_at, "fields": _fields(job),
        # What the job cost: only a completed job is charged (a failed or canceled one
        # released its hold); an active one holds its price.
        "charged": job.credits if status == Status.COMPLETED else 0,
        "poster_key": job.poster_key,
        # The version of what the fragments show: the record's rev, bumped by the database
        # on every write, orders states whichever process wrote them; the page keeps the
        # newest (static/app.js).
        "updated": str(job.rev),
    }


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        enable_async=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # One cache of past run times per app (the environment is built once per app).
    durations = Durations()
    env.globals["durations"] = durations
    env.globals["job_view"] = partial(_job_view, durations=durations)
    env.filters["duration"] = lambda s: f"{int(s) // 60}:{int(s) % 60:02d}"
    env.filters["precise_created"] = precise_created
    return env


class Fragments:
    """Renders the partials the stream pushes and the handlers return."""

    def __init__(self, env: Environment):
        self.env = env
        self.durations = cast(Durations, env.globals["durations"])
        self.job_view = cast(Callable[[VideoJob], dict[str, Any]], env.globals["job_view"])

    def render(self, name: str, **context: Any) -> str:
        return self.env.get_template(f"partials/{name}.html").render(**context)

    def job_card(self, job: VideoJob, video_url: str | None = None) -> str:
        return precise_created(self.render("job_card", job=self.job_view(job),
                                           video_url=video_url), job.created_at)

    def toast(self, job: VideoJob, announce: bool = False) -> str:
        """The short toast of a job that ended."""
        return self.render("toast", job=self.job_view(job), announce=announce)

    def progress_toast(self, active: list[VideoJob], version: int,
                       batches: list[RunningBatch] | None = None) -> str:
        """The one notice about the person's running jobs (`active`, read from the database
        at `version`, epoch ms): hidden when there are none."""
        return self.render("progress_toast", jobs=[self.job_view(j) for j in active],
                           version=version, batches=batches or [])

    def away_toast(self, ended: list[VideoJob]) -> str:
        """One summary of the jobs that ended while the person was away."""
        counts = {s: sum(1 for j in ended if j.status == s) for s in FINAL}
        ready, failed, canceled = (counts[Status.COMPLETED], counts[Status.FAILED],
                                   counts[Status.CANCELED])
        parts = [f"{n} {label}" for n, label in
                 ((ready, "ready"), (failed, "failed"), (canceled, "canceled")) if n]
        # "4 videos ready, 1 failed": the noun once, with the first count
        first = parts[0].split(" ", 1)
        parts[0] = f"{first[0]} {'video' if first[0] == '1' else 'videos'} {first[1]}"
        return self.render("away_toast", title=", ".join(parts), ready=ready, failed=failed,
                           canceled=canceled)

    def batch_card(self, view: dict[str, Any]) -> str:
        return self.render("batch_card", b=view)

    def batch_toast(self, view: dict[str, Any]) -> str:
        return self.render("batch_toast", b=view)

    def message_toast(self, kind: str, message: str, link: str | None = None,
                      link_text: str | None = None) -> str:
        return self.render("message_toast", kind=kind, message=message, link=link,
                           link_text=link_text)

    def credits(self, user: User) -> str:
        return self.render("credits", user=user)

    def library_tile(self, item: LibraryItem, url: str, poster_url: str | None = None) -> str:
        return self.render("library_tile", item=item, url=url, poster_url=poster_url)
