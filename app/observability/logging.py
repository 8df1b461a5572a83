"""The one logging configuration of the app and the CLI.

structlog over the standard library: the app's own events (structlog loggers from
`get_logger`) and everything that logs through `logging` (uvicorn, litestar, httpx, boto)
reach one handler on the root logger and pass one chain of processors, so every line has
the same shape and the same redaction. `LOG_FORMAT=console` (the default) renders lines for
people; `LOG_FORMAT=json` renders one JSON object per line for a log pipeline.

Secrets never reach a line, belt and braces: fields named like a secret (`*key`, `*secret`,
`*token`, `password`, `cookie`, `authorization`, `*signature` …) are replaced whatever they
hold; every string (the message, values, nested values, tracebacks) is scrubbed of presigned
URL query strings, `Key …`/`Bearer …` header values, cookies and long hex signatures; and the
configured secrets themselves (FAL_KEY, AWS_SECRET_ACCESS_KEY, SECRET_KEY, METRICS_TOKEN …)
are replaced wherever they appear.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import structlog

REDACTED = "[REDACTED]"

# Field names whose values are secrets whatever they hold.
_SECRET_NAME = re.compile(
    r"(?i)(?:key|secret|token|password|passwd|passphrase|cookie|cookies|authorization|"
    r"signature|credential|credentials|session)$|password|secret|x-fal-webhook-signature|x-amz-"
)
# Fields of the event itself that are never redacted by name.
_STRUCTURAL = frozenset({"event", "logger", "level", "timestamp", "exception", "_record",
                         "_from_structlog"})

_VALUE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # The query string of any absolute URL: presigned URLs carry their signature there.
    (re.compile(r"(?i)\b(https?://[^\s?#\"'<>]+)\?[^\s#\"'<>]+"), r"\1?" + REDACTED),
    # Signing and credential parameters anywhere else (relative URLs, reprs of params).
    (re.compile(r"(?i)\b(X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|"
                r"AWSAccessKeyId|access_token|api_key|apikey|token|secret|password|sig)"
                r"=[^&\s\"'<>;,]+"), r"\1=" + REDACTED),
    # Authorization header values: fal's `Key <key>`, `Bearer <token>`, `Basic <b64>`.
    (re.compile(r"\b(Key|Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=:-]{6,}"), r"\1 " + REDACTED),
    (re.compile(r"AWS4-HMAC-SHA256\s+[^\n\"']+"), "AWS4-HMAC-SHA256 " + REDACTED),
    # Header-like pairs inside text (a repr of headers, a raw cookie header).
    (re.compile(r"(?i)([\"']?\b(?:cookie|set-cookie|authorization|x-fal-webhook-signature|"
                r"x-csrftoken|x-amz-security-token)[\"']?\s*[:=]\s*)([\"']?)[^\"'\n]+"),
     r"\1\2" + REDACTED),
    # The session and CSRF cookies by name.
    (re.compile(r"(?i)\b(reelforge_session|csrftoken|session)=[^;\s\"',&]+"), r"\1=" + REDACTED),
    # Long hex strings: webhook signatures (Ed25519, 128 hex characters) and the like.
    (re.compile(r"\b[0-9a-fA-F]{96,}\b"), REDACTED),
    # AWS access key ids.
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
]

_known_lock = threading.Lock()
_known_values: set[str] = set()
_known_pattern: re.Pattern[str] | None = None


def register_secret(*values: str | None) -> None:
    """Values that must never appear in a log line, wherever they turn up."""
    global _known_pattern
    with _known_lock:
        fresh = {v for v in values if isinstance(v, str) and len(v) >= 6} - _known_values
        if not fresh:
            return
        _known_values.update(fresh)
        ordered = sorted(_known_values, key=len, reverse=True)
        _known_pattern = re.compile("|".join(re.escape(v) for v in ordered))


def secrets_of(settings: Any) -> list[str | None]:
    """The configured secrets of a Settings object, for `configure_logging(secrets=…)`."""
    return [getattr(settings, name, None) for name in (
        "fal_key", "aws_secret_access_key", "secret_key", "metrics_token", "surrealdb_pass",
        "backup_token")]


def redact_text(text: str) -> str:
    known = _known_pattern
    if known is not None:
        text = known.sub(REDACTED, text)
    for pattern, replacement in _VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _scrub(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    if depth > 8:
        return REDACTED
    if isinstance(value, Mapping):
        return {k: REDACTED if isinstance(k, str) and _SECRET_NAME.search(k)
                else _scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        if (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str | bytes)
                and _SECRET_NAME.search(value[0] if isinstance(value[0], str)
                                        else value[0].decode("latin-1"))):
            return (value[0], REDACTED)  # a (name, value) header pair
        return [_scrub(v, depth + 1) for v in value]
    return redact_text(str(value))  # exceptions, datetimes, record ids …


def redact(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """The structlog processor: applied to every event, the app's and the libraries'."""
    out: dict[str, Any] = {}
    for name, value in event_dict.items():
        if name in ("_record", "_from_structlog"):
            out[name] = value
        elif name not in _STRUCTURAL and _SECRET_NAME.search(name):
            out[name] = REDACTED
        else:
            out[name] = _scrub(value)
    return out


# -- configuration ---------------------------------------------------------------------

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]
_configured = False
_NOISY = ("httpx", "httpcore", "hpack", "botocore", "boto3", "s3transfer", "urllib3",
          "werkzeug", "watchfiles")


def _configure_structlog() -> None:
    global _configured
    if _configured:
        return
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a logger used before configure_logging() must follow it afterwards.
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(name: str) -> Any:
    """A structlog logger that logs through the standard library logger `name`."""
    _configure_structlog()
    return structlog.get_logger(name)


def build_formatter(fmt: str = "console") -> logging.Formatter:
    """The formatter of the app's handler (tests attach it to a capturing handler)."""
    renderer: Any
    ordered: list[Any] = []
    if fmt == "json":
        ordered = [_timestamp_first]
        renderer = structlog.processors.JSONRenderer(default=str, sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.stdlib.ExtraAdder(), _drop_color_message],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            *ordered,
            renderer,
        ],
    )


def _drop_color_message(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """uvicorn passes a copy of its message with terminal colour codes as an extra."""
    event_dict.pop("color_message", None)
    return event_dict


def _timestamp_first(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """JSON lines read best as timestamp, level, logger, event, then the fields."""
    head = {k: event_dict.pop(k) for k in ("timestamp", "level", "logger", "event")
            if k in event_dict}
    return {**head, **event_dict}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def normalize_format(fmt: str | None) -> str:
    return "json" if (fmt or "").strip().lower() == "json" else "console"


def configure_logging(
    fmt: str | None = "console", *, level: int = logging.INFO,
    secrets: Iterable[str | None] = (),
) -> None:
    """Install the app's handler on the root logger (replacing an earlier one of ours,
    leaving anybody else's alone). Safe to call again: the last call wins."""
    register_secret(*secrets)
    _configure_structlog()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "reelforge", False):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.reelforge = True  # type: ignore[attr-defined]
    handler.setFormatter(build_formatter(normalize_format(fmt)))
    root.addHandler(handler)
    root.setLevel(level)
    for name in _NOISY:  # their INFO lines are one per HTTP call; warnings still show
        logging.getLogger(name).setLevel(logging.WARNING)
