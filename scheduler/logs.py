"""Logging for riskrank's processes: one line per record, to stderr.

On a terminal the lines are for people (time, level, process, logger,
message). Anywhere else (a container, a service manager, a file) each line
is one JSON object, for a log collector: `ts`, `level`, `logger`,
`process`, `message`, then the record's own fields (`request_line` and
`task_line` below add theirs: method, route, status, duration_ms; task,
outcome, duration_ms). RISKRANK_LOG_FORMAT=json or text overrides the
choice.

Nothing a record carries may hold a secret: webhook secrets and signatures
are never logged, and every line passes through `redact`, which masks what
looks like an API token, a bearer credential or a URL's password, in case a
message quotes one (an error from a driver, a URL a user typed)."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"

# What a token or a credential looks like in a line, and what is kept of it.
_SECRETS = (
    # riskrank's API tokens (scheduler.services.tokens.TOKEN_PREFIX).
    (re.compile(r"\brr_[A-Za-z0-9_\-]{8,}"), "rr_…"),
    (re.compile(r"(?i)\b(bearer|token|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"), r"\1 …"),
    # A URL's password: scheme://user:password@host.
    (re.compile(r"(://[^/\s:@]*):[^@\s/]+@"), r"\1:…@"),
    # key=value pairs a message may quote from a query string or settings.
    (
        re.compile(r"(?i)\b(secret|token|password|signature|private_token)=[^&\s,;]+"),
        r"\1=…",
    ),
)

# The attributes every LogRecord has: what is not among them was passed
# with `extra=` and goes into the JSON line as a field of its own.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    """`text` with anything that looks like a token or a password masked."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    """The text format, tokens and passwords masked."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line, tokens and passwords masked."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str))


def wants_json(log_format: str, stream: Any) -> bool:
    """JSON lines for `json`, text for `text`; for `auto`, JSON unless the
    stream is a terminal."""
    if log_format in ("json", "text"):
        return log_format == "json"
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def configure_logging(level: str = "INFO", log_format: str = "auto") -> None:
    """Every record to stderr, one line each (RISKRANK_LOG_LEVEL,
    RISKRANK_LOG_FORMAT)."""
    handler = logging.StreamHandler(sys.stderr)
    use_json = wants_json(log_format, sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else RedactingFormatter(FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


REQUEST_LOGGER = "riskrank.request"
TASK_LOGGER = "riskrank.task"


def request_line(*, method: str, path: str, route: str, status: int, seconds: float) -> None:
    """The one line of an HTTP request: its path and its route's template
    (never the query string, nor a header), the status and how long it
    took."""
    logging.getLogger(REQUEST_LOGGER).info(
        "%s %s %d %.1f ms",
        method,
        path,
        status,
        seconds * 1000,
        extra={
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
        },
    )


def task_line(*, task: str, task_id: str, outcome: str, seconds: float) -> None:
    """The one line of a Celery task run: its name, its outcome (success,
    failure, retry) and how long it took. Its arguments are ids, but they
    are left out all the same: a line per task needs none."""
    logging.getLogger(TASK_LOGGER).log(
        logging.INFO if outcome == "success" else logging.WARNING,
        "%s %s %.1f ms",
        task,
        outcome,
        seconds * 1000,
        extra={
            "task": task,
            "task_id": task_id,
            "outcome": outcome,
            "duration_ms": round(seconds * 1000, 3),
        },
    )
