"""python -m app serve | init-db | users create | users promote | credits grant |
jobs list | show | retry | cancel | prune | backup | restore (app/backup/cli.py)"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

from app.backup import cli as backup_cli
from app.db import jobs as jobs_db
from app.db import users as users_db
from app.db.connection import Database, DatabaseLocked, Thrown
from app.db.process_exit import exit_now
from app.db.records import User, VideoJob
from app.db.schema import apply_schema
from app.emails import InvalidEmail, normalise_email
from app.jobs.states import Status
from app.observability.logging import configure_logging, secrets_of
from app.settings import get_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reelforge", description="Reelforge video generation app")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the web app")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1,
                       help="app processes (needs a SurrealDB server: DATABASE_URL=ws://…)")
    sub.add_parser("init-db", help="apply scripts/schema.surql (idempotent; other commands "
                   "and `serve` apply it only when it changed)")

    users = sub.add_parser("users", help="manage accounts").add_subparsers(dest="action",
                                                                           required=True)
    create = users.add_parser("create", help="create an account")
    create.add_argument("--email", required=True)
    create.add_argument("--password", required=True)
    create.add_argument("--credits", type=int)
    create.add_argument("--admin", action="store_true")
    promote = users.add_parser("promote", help="make an account an admin")
    promote.add_argument("--email", required=True)

    credits = sub.add_parser("credits", help="manage credits").add_subparsers(dest="action",
                                                                              required=True)
    grant = credits.add_parser("grant", help="add credits to an account")
    grant.add_argument("--email", required=True)
    grant.add_argument("--amount", type=int, required=True)

    jobs = sub.add_parser("jobs", help="inspect and act on video jobs").add_subparsers(
        dest="action", required=True)
    listing = jobs.add_parser("list", help="everyone's jobs, newest first")
    listing.add_argument("--state", choices=["active", *[s.value for s in Status]])
    listing.add_argument("--limit", type=int, default=50)
    for name, text in (("show", "one job with its timeline"),
                       ("retry", "start a new job with a failed job's inputs (charged normally)"),
                       ("cancel", "cancel a job now; its credits are released")):
        jobs.add_parser(name, help=text).add_argument("job_id", metavar="ID")
    prune = jobs.add_parser("prune", help="delete the timelines of jobs that ended long ago "
                            "(the jobs and their ledger entries stay)")
    prune.add_argument("--days", type=float, default=None,
                       help="older than this many days (default: JOB_TIMELINE_DAYS, 30)")
    backup_cli.add_parsers(sub)  # backup, restore
    return p


async def _with_db(work: Callable[[Database], Awaitable[str]], force_schema: bool = False
                   ) -> str:
    db = Database(get_settings())
    await db.connect()
    try:
        await apply_schema(db, force=force_schema)
        return await work(db)
    finally:
        await db.close()


async def _create(db: Database, args: argparse.Namespace) -> str:
    from app.web.auth import MIN_PASSWORD, hash_password

    if len(args.password) < MIN_PASSWORD:
        raise SystemExit(f"error: --password must be at least {MIN_PASSWORD} characters")
    credits = args.credits if args.credits is not None else get_settings().signup_credits
    try:
        email = normalise_email(args.email)  # the form sign-up and sign-in use
    except InvalidEmail as exc:
        raise SystemExit(f"error: --email {args.email!r}: {exc}") from None
    try:
        user = await users_db.create(db, email, hash_password(args.password),
                                     credits, admin=args.admin)
    except Thrown:
        raise SystemExit(f"error: an account with email {args.email} already exists") from None
    return f"created {user.email} with {user.balance} credits"


async def _user(db: Database, email: str) -> User:
    user = await users_db.by_typed_email(db, email)
    if user is None:
        raise SystemExit(f"error: no account with email {email}")
    return user


async def _grant(db: Database, args: argparse.Namespace) -> str:
    user = await _user(db, args.email)
    try:
        after = await users_db.grant(db, user.id, args.amount, "grant")
    except Thrown as exc:
        raise SystemExit(f"error: {exc.code.replace('_', ' ')}") from None
    return f"{after.email} now has {after.balance} credits"


async def _promote(db: Database, args: argparse.Namespace) -> str:
    user = await _user(db, args.email)
    await users_db.set_admin(db, user.id, True)
    return f"{user.email} is now an admin"


# -- jobs ---------------------------------------------------------------------------------


def _ago(when: Any) -> str:
    if not isinstance(when, datetime):
        return "-"
    from app.web.admin_view import ago

    return ago(max(0, int((datetime.now(UTC) - when).total_seconds())))


async def _jobs_list(db: Database, args: argparse.Namespace) -> str:
    from app.web.admin import STATE_FILTERS

    rows = await jobs_db.list_all(db, statuses=STATE_FILTERS[args.state] if args.state else None,
                                  limit=max(1, min(args.limit, 1000)))
    if not rows:
        return "no jobs"
    lines = [f"{'ID':<32}  {'STATE':<10}  {'TEMPLATE':<20}  {'OWNER':<28}  {'AGE':>7}  "
             f"{'TRIES':>5}  ERROR"]
    for j in rows:
        lines.append(
            f"{j.id:<32}  {j.status.value:<10}  {j.template[:20]:<20}  "
            f"{(j.owner_email or '?')[:28]:<28}  {_ago(j.created_at):>7}  "
            f"{j.attempts:>5}  {(j.error or '')[:60]}")
    return "\n".join(lines)


async def _jobs_prune(db: Database, args: argparse.Namespace) -> str:
    days = get_settings().job_timeline_days if args.days is None else args.days
    if days <= 0:
        raise SystemExit("error: --days must be more than 0 (JOB_TIMELINE_DAYS=0 keeps "
                         "timelines for good)")
    pruned = await jobs_db.prune_timelines(db, days * 24 * 3600)
    return f"pruned the timelines of {pruned} jobs that ended more than {days:g} days ago"


async def _job(db: Database, job_id: str) -> VideoJob:
    job = await jobs_db.get(db, job_id) if job_id.isalnum() and len(job_id) <= 64 else None
    if job is None:
        raise SystemExit(f"error: no job {job_id}")
    return job


async def _jobs_show(db: Database, args: argparse.Namespace) -> str:
    job = await _job(db, args.job_id)
    owner = await users_db.by_id(db, job.owner_id)
    fields: list[tuple[str, object]] = [
        ("id", job.id), ("state", job.status.value),
        ("owner", f"{owner.email if owner else '?'} ({job.owner_id})"),
        ("template", job.template), ("variables", job.variables),
        ("start image", job.start_key), ("credits", job.credits),
        ("provider", job.provider), ("request id", job.provider_request_id),
        ("attempts", job.attempts), ("checks", job.checks),
        ("lease", f"{job.lease_owner} until {job.lease_until}" if job.lease_owner else None),
        ("created", job.created_at), ("finished", job.finished_at),
        ("error", job.error), ("result", job.result_key),
    ]
    lines = [f"{name + ':':<13}{value}" for name, value in fields if value not in (None, "")]
    lines.append("timeline:")
    for e in await jobs_db.timeline(db, job.id):
        lines.append(f"  {e.at:%Y-%m-%d %H:%M:%S}  {e.from_status or '-':>10} -> "
                     f"{e.to:<10}  {e.reason or ''}")
    return "\n".join(lines)


async def _with_services(work: Callable[[Any], Awaitable[str]]) -> str:
    """The job engine without its driver: moves are made, logged and counted as in the app;
    a running driver (on a database server) picks new and changed jobs up."""
    from app.services import close_services, open_services

    services = await open_services(get_settings(), with_driver=False)
    try:
        return await work(services)
    finally:
        await close_services(services)


async def _jobs_retry(services: Any, args: argparse.Namespace) -> str:
    from app.jobs.service import JobRequestError

    job = await _job(services.db, args.job_id)
    if job.status not in (Status.FAILED, Status.CANCELED):
        raise SystemExit(f"error: job {args.job_id} is {job.status}; only a failed or "
                         "canceled job can be retried")
    try:  # one retry per job (admin page or CLI): a second one names the first
        new, created = await services.jobs.retry(args.job_id, services.settings.provider_name)
    except JobRequestError as exc:
        raise SystemExit(f"error: {exc.body.get('message') or exc.body.get('error')}") from None
    if not created:
        return f"{args.job_id} was already retried as {new.id}; nothing new was started"
    return f"retried {args.job_id} as {new.id} ({new.credits} credits reserved)"


async def _jobs_cancel(services: Any, args: argparse.Namespace) -> str:
    from app.jobs.service import JobRequestError
    from app.providers.base import ProviderError

    job = await _job(services.db, args.job_id)
    try:
        moved = await services.jobs.cancel(job.owner_id, args.job_id,
                                           reason="canceled from the command line")
    except JobRequestError as exc:
        raise SystemExit(f"error: {exc.body.get('message')}") from None
    note = ""
    if moved.provider_request_id and moved.provider == "fal" and (
            services.settings.provider_name == "fal"):
        # No driver here to tell fal: do it now, best effort.
        from app.services import make_provider

        provider = make_provider(services.settings)
        try:
            await provider.cancel(moved.endpoint, moved.provider_request_id)
            note = "; canceled at fal"
        except ProviderError as exc:
            note = f"; fal was not told ({exc})"
        finally:
            await provider.aclose()
    return f"canceled {args.job_id}; {moved.credits} credits released{note}"


def serve(host: str | None, port: int | None, workers: int = 1) -> None:
    import uvicorn

    from app.main import create_app
    from app.web.header_timeout import HeaderTimeoutProtocol

    settings = get_settings()
    if workers < 1:
        raise SystemExit("error: --workers must be at least 1")
    if workers > 1 and settings.is_embedded:
        raise SystemExit(
            "error: --workers needs a SurrealDB server (DATABASE_URL=ws://host:8000/rpc): the "
            "embedded database can be opened by one process only. See docs/DEPLOY.md.")
    host, port = host or settings.host, port or settings.port
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    print(f"Reelforge is starting: open http://{shown}:{port}/ in your browser", flush=True)
    # log_config=None: uvicorn's own lines go through app/observability/logging.py like the
    # rest; its access log is off because the app logs every request (without query strings).
    # proxy_headers=False: the app decides whom to believe (TRUSTED_PROXIES).
    # http=: uvicorn's protocol with a deadline for the request headers (slowloris), which
    # uvicorn itself lacks; see app/web/header_timeout.py.
    options: dict[str, Any] = dict(
        host=host, port=port, log_level="info", timeout_graceful_shutdown=10,
        proxy_headers=False, log_config=None, access_log=False,
        http=functools.partial(HeaderTimeoutProtocol,
                               header_timeout=settings.request_header_timeout))
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
    else:  # each worker process builds its own app from the same environment
        uvicorn.run("app.main:create_app", factory=True, workers=workers, **options)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_format, secrets=secrets_of(settings))
    try:
        if args.command == "serve":
            serve(args.host, args.port, args.workers)
            return
        if args.command in backup_cli.COMMANDS:
            out = backup_cli.run_command(args)
        elif args.command == "init-db":
            # asked for: applied (every index rebuilt) whether it changed or not
            out = asyncio.run(_with_db(_applied, force_schema=True))
        elif args.command == "users" and args.action == "create":
            out = asyncio.run(_with_db(lambda db: _create(db, args)))
        elif args.command == "users" and args.action == "promote":
            out = asyncio.run(_with_db(lambda db: _promote(db, args)))
        elif args.command == "jobs" and args.action in ("list", "show", "prune"):
            show = {"list": _jobs_list, "show": _jobs_show, "prune": _jobs_prune}[args.action]
            out = asyncio.run(_with_db(lambda db: show(db, args)))
        elif args.command == "jobs":
            act = _jobs_retry if args.action == "retry" else _jobs_cancel
            out = asyncio.run(_with_services(lambda services: act(services, args)))
        else:
            out = asyncio.run(_with_db(lambda db: _grant(db, args)))
    except DatabaseLocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(out)


def run() -> NoReturn:
    """The command line (`python -m app`, `reelforge`): `main`, then `exit_now` with its
    exit code, once the database is closed."""
    try:
        main()
    except SystemExit as exc:  # argparse's and the commands' own exits
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        exit_now(exc.code if isinstance(exc.code, int) else 1 if exc.code else 0)
    exit_now(0)


async def _applied(db: Database) -> str:
    return f"schema applied to {db.url}"


if __name__ == "__main__":
    main()
