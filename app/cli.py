"""python -m app serve | init-db | users create | users promote | credits grant"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable

from app.db import users as users_db
from app.db.connection import Database, DatabaseLocked, Thrown
from app.db.schema import apply_schema
from app.settings import get_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reelforge", description="Reelforge video generation app")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the web app")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    sub.add_parser("init-db", help="apply scripts/schema.surql (idempotent)")

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
    return p


async def _with_db(work: Callable[[Database], Awaitable[str]]) -> str:
    db = Database(get_settings())
    await db.connect()
    try:
        await apply_schema(db)
        return await work(db)
    finally:
        await db.close()


async def _create(db: Database, args: argparse.Namespace) -> str:
    from app.web.auth import MIN_PASSWORD, hash_password

    if len(args.password) < MIN_PASSWORD:
        raise SystemExit(f"error: --password must be at least {MIN_PASSWORD} characters")
    credits = args.credits if args.credits is not None else get_settings().signup_credits
    try:
        user = await users_db.create(db, args.email.strip().lower(), hash_password(args.password),
                                     credits, admin=args.admin)
    except Thrown:
        raise SystemExit(f"error: an account with email {args.email} already exists") from None
    return f"created {user['email']} with {user['balance']} credits"


async def _user(db: Database, email: str) -> dict:
    user = await users_db.by_email(db, email.strip().lower())
    if user is None:
        raise SystemExit(f"error: no account with email {email}")
    return user


async def _grant(db: Database, args: argparse.Namespace) -> str:
    user = await _user(db, args.email)
    try:
        after = await users_db.grant(db, str(user["id"].id), args.amount, "grant")
    except Thrown as exc:
        raise SystemExit(f"error: {exc.code.replace('_', ' ')}") from None
    return f"{after['email']} now has {after['balance']} credits"


async def _promote(db: Database, args: argparse.Namespace) -> str:
    user = await _user(db, args.email)
    await users_db.set_admin(db, str(user["id"].id), True)
    return f"{user['email']} is now an admin"


def serve(host: str | None, port: int | None) -> None:
    import uvicorn

    from app.main import create_app

    settings = get_settings()
    host, port = host or settings.host, port or settings.port
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    print(f"Reelforge is starting: open http://{shown}:{port}/ in your browser", flush=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info",
                timeout_graceful_shutdown=10, proxy_headers=False)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            serve(args.host, args.port)
            return
        if args.command == "init-db":
            out = asyncio.run(_with_db(lambda db: _applied(db)))
        elif args.command == "users" and args.action == "create":
            out = asyncio.run(_with_db(lambda db: _create(db, args)))
        elif args.command == "users" and args.action == "promote":
            out = asyncio.run(_with_db(lambda db: _promote(db, args)))
        else:
            out = asyncio.run(_with_db(lambda db: _grant(db, args)))
    except DatabaseLocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(out)


async def _applied(db: Database) -> str:
    return f"schema applied to {db.url}"


if __name__ == "__main__":
    main()
