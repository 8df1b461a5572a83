"""Queries on people, their credits and the ledger."""

from __future__ import annotations

from typing import Any

from app.db.connection import Database, Thrown, rid
from app.db.records import User, decode
from app.emails import InvalidEmail, legacy_form, normalise_email


async def create(
    db: Database, email: str, password_hash: str, credits: int, admin: bool = False
) -> User:
    """Create a person and their opening ledger entry; Thrown("email_taken") if taken."""
    if not _indexable(email):
        raise ValueError("An email address cannot contain a NUL character")
    result = await db.write(
        """
        BEGIN;
        IF (SELECT VALUE id FROM user WHERE email = $email LIMIT 1)[0] != NONE {
            THROW "email_taken"
        };
        LET $u = (CREATE ONLY user CONTENT {
            email: $email, password_hash: $hash, balance: $credits, admin: $admin
        });
        IF $credits != 0 {
            CREATE ledger CONTENT { owner: $u.id, amount: $credits, reason: "signup" }
        };
        RETURN $u;
        COMMIT;
        """,
        {"email": email, "hash": password_hash, "credits": credits, "admin": admin},
    )
    row: dict[str, Any] = result[-1]
    return decode(row, User)


async def by_email(db: Database, email: str) -> User | None:
    if not _indexable(email):
        return None  # no account can have it (and asking would be a DatabaseError: a 500)
    rows = await db.read_one("SELECT * FROM user WHERE email = $email LIMIT 1", {"email": email})
    return decode(rows[0], User) if rows else None


async def by_typed_email(db: Database, typed: str) -> User | None:
    """The account an address as typed names: by its normal form (app/emails.py), else
    by the form addresses were stored in before they were normalised."""
    try:
        email: str | None = normalise_email(typed)
    except InvalidEmail:
        email = None
    for candidate in dict.fromkeys(e for e in (email, legacy_form(typed)) if e):
        if (user := await by_email(db, candidate)) is not None:
            return user
    return None


def _indexable(email: str) -> bool:
    """The engine refuses a NUL byte in a value of an indexed field ("to be serialized
    string contained a null byte"), and `email` has a unique index."""
    return "\0" not in email


async def by_id(db: Database, user_id: str) -> User | None:
    row: dict[str, Any] | None = await db.read_one("SELECT * FROM ONLY $u",
                                                   {"u": rid("user", user_id)})
    return decode(row, User)


async def grant(db: Database, user_id: str, amount: int, reason: str) -> User:
    """Add (or with a negative amount, remove) credits, with its ledger entry."""
    result = await db.write(
        """
        BEGIN;
        LET $u = (SELECT * FROM ONLY $user);
        IF $u = NONE { THROW "no_such_user" };
        IF $u.balance + $amount < $u.reserved { THROW "below_reserved" };
        LET $after = (UPDATE ONLY $user SET balance += $amount RETURN AFTER);
        CREATE ledger CONTENT { owner: $user, amount: $amount, reason: $reason };
        RETURN $after;
        COMMIT;
        """,
        {"user": rid("user", user_id), "amount": amount, "reason": reason},
    )
    row: dict[str, Any] = result[-1]
    return decode(row, User)


async def set_admin(db: Database, user_id: str, admin: bool) -> None:
    await db.write("UPDATE $u SET admin = $admin", {"u": rid("user", user_id), "admin": admin})


async def ledger_sum(db: Database, user_id: str) -> int:
    value = await db.read_one(
        "RETURN math::sum(SELECT VALUE amount FROM ledger WHERE owner = $u)",
        {"u": rid("user", user_id)},
    )
    return int(value or 0)


__all__ = ["Thrown", "by_email", "by_id", "create", "grant", "ledger_sum"]


async def set_password(db: Database, user_id: str, password_hash: str) -> None:
    await db.write("UPDATE $u SET password_hash = $hash RETURN NONE",
                   {"u": rid("user", user_id), "hash": password_hash})
