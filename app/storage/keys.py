"""Object keys: one validation rule shared by every storage backend."""

from __future__ import annotations

import re

MAX_KEY_LENGTH = 1024  # S3's limit, in bytes; keys are ASCII so bytes == characters
_ALLOWED = re.compile(r"[A-Za-z0-9._/-]+")


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a safe relative object key, else raise ValueError.

    A key is 1..1024 characters of `[A-Za-z0-9._/-]`, does not start with `/`, and has no
    empty, `.` or `..` segments (so `a//b`, `a/`, `./a` and `../x` are all refused). Backslashes,
    NUL and any other character are refused by the character set.
    """
    if not isinstance(key, str):
        raise ValueError(f"storage key must be a str, not {type(key).__name__}")
    if not key:
        raise ValueError("storage key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"storage key is longer than {MAX_KEY_LENGTH} characters")
    if _ALLOWED.fullmatch(key) is None:
        raise ValueError(f"storage key has characters outside [A-Za-z0-9._/-]: {key!r}")
    if key.startswith("/"):
        raise ValueError(f"storage key must be relative: {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"storage key has an empty, '.' or '..' segment: {key!r}")
    return key
