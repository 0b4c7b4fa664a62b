"""scheduler.logs: the JSON line's fields, and what is masked in any line."""

from __future__ import annotations

import io
import json
import logging

from scheduler import logs


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("riskrank.test", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_a_json_line_holds_the_record_and_its_own_fields() -> None:
    line = json.loads(
        logs.JsonFormatter().format(
            _record("%s %s %d", "POST", "/webhooks/github", 202, status=202, duration_ms=1.5)
        )
    )
    assert set(line) == {"ts", "level", "logger", "process", "message", "status", "duration_ms"}
    assert (line["level"], line["logger"], line["message"]) == (
        "INFO",
        "riskrank.test",
        "POST /webhooks/github 202",
    )
    assert (line["status"], line["duration_ms"]) == (202, 1.5)


def test_tokens_bearers_passwords_and_secret_pairs_are_masked() -> None:
    token = "rr_AbCdEf0123456789-_xyz"
    assert logs.redact(f"refused {token}.") == "refused rr_…."
    assert logs.redact("Authorization: Bearer abc.def-123456") == "Authorization: Bearer …"
    assert logs.redact("postgresql://riskrank:hunter2@db:5432/riskrank") == (
        "postgresql://riskrank:…@db:5432/riskrank"
    )
    assert logs.redact("GET /x?secret=s3cret&token=t0ken&a=1") == "GET /x?secret=…&token=…&a=1"
    assert logs.redact("redis://127.0.0.1:6379/12 plan 42 of acme/app") == (
        "redis://127.0.0.1:6379/12 plan 42 of acme/app"
    )
    text = logs.RedactingFormatter(logs.FORMAT).format(_record("with %s", token))
    assert text.endswith("riskrank.test: with rr_…")


def test_json_unless_a_terminal_unless_told() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.wants_json("auto", io.StringIO()) is True
    assert logs.wants_json("auto", Terminal()) is False
    assert logs.wants_json("json", Terminal()) is True
    assert logs.wants_json("text", io.StringIO()) is False
