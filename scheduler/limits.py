"""What the database can hold, in one place: the column definitions
(scheduler.models) and the checks the API runs before it answers 202 read the
same numbers, so nothing is accepted that a worker then cannot store.

Lengths are counted as the database counts them: a `String(n)` column in
characters (PostgreSQL's varchar), an indexed `Text` column in UTF-8 bytes
(a btree entry holds at most 2,704 bytes on PostgreSQL: 4,000 CJK characters,
12,000 bytes, do not fit, nor 2,700 random ASCII ones). Neither backend's
text holds a NUL (PostgreSQL refuses it in text and in JSONB), and a lone
surrogate cannot be encoded to UTF-8 at all.

Lists are bounded too, one number per list field: the API refuses a longer
one (422, naming the field) before any work, and the pydantic models that
declare the field (and so the OpenAPI document) read the same number.

A value past any of these bounds is refused with 422 (Unstorable), whatever
the endpoint: the rule is in scheduler.errors."""

from __future__ import annotations

import math
from collections.abc import Sized
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias

from scheduler.ingest.errors import Unstorable

# String(n) columns, in characters.
SHA_CHARS: Final = 64  # commits.sha, parent_sha (SHA-256 ids are 64 hex digits)
NAME_CHARS: Final = 255  # branches, authors, run keys, delivery ids, content types
EVENT_CHARS: Final = 64  # ci_events.event, ci_events.action
# Indexed Text columns, in UTF-8 bytes: below the btree entry limit with room
# for the other key columns.
TEST_ID_BYTES: Final = 2048  # known_tests.name (unique with the repository)
PATH_BYTES: Final = 2048  # changed_files.path, file_test_links.path
# Integer columns.
INT32_MAX: Final = 2**31 - 1
INT64_MAX: Final = 2**63 - 1
# JSON nesting a body may have; riskrank's own and the providers' bodies
# need fewer than ten levels.
JSON_DEPTH: Final = 64
# An id a generic event's sender picks (X-Riskrank-Delivery, `delivery_id`):
# stored as "<repository id>:<id>" in a NAME_CHARS column.
GENERIC_DELIVERY_CHARS: Final = 200
# A hunk's symbol (scheduler.ingest.hunks): a function or class name.
SYMBOL_CHARS: Final = 200

# Lists, in items.
PLAN_TESTS: Final = 200_000  # a plan request's test ids (GET ?tests=, POST "tests")
RESULTS: Final = 1_000_000  # results (attempts) of one report, JSON or JUnit
PUSH_COMMITS: Final = 2048  # commits a push lists (GitHub lists at most 2,048)
COMMIT_FILES: Final = 100_000  # a commit's added/modified/removed; a generic changed_files
PARENTS: Final = 64  # a generic event's parents (an octopus merge has a few dozen)
HUNKS: Final = 100  # a changed file's hunks (the mutation history's largest file has 35)

# The request's head, read before any handler: one header (name and value),
# all headers, and the URL (path and query string), in bytes. Over them the
# answer is 431 or 414 and nothing else runs. A long list of test ids goes in
# a plan's POST body, not its URL.
HEADER_BYTES: Final = 8 * 1024
HEADERS_BYTES: Final = 32 * 1024
URL_BYTES: Final = 8 * 1024

# pydantic's error types for a value past a bound (a length, a count, a
# range, a number that is not finite) and riskrank's own for what the
# database cannot hold: 422 like every limit here; a model's other errors
# (a wrong type, a missing or unknown field) are 400.
UNSTORABLE_ERROR: Final = "unstorable"
BOUND_ERRORS: Final = frozenset(
    {
        "string_too_long",
        "string_too_short",
        "too_long",
        "too_short",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "finite_number",
        UNSTORABLE_ERROR,
    }
)


def _problem(value: str) -> str | None:
    if "\x00" in value:
        return "must not contain a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain a lone surrogate"
    return None


def text(
    value: str, field: str, *, max_chars: int | None = None, max_bytes: int | None = None
) -> str:
    """`value` if the database can store it under `field`'s limit; else
    Unstorable (422) naming the field."""
    problem = _problem(value)
    if problem is None and max_chars is not None and len(value) > max_chars:
        problem = f"must be at most {max_chars} characters (it has {len(value)})"
    if problem is None and max_bytes is not None:
        size = len(value.encode("utf-8"))
        if size > max_bytes:
            problem = f"must be at most {max_bytes} bytes in UTF-8 (it has {size})"
    if problem is not None:
        raise Unstorable(f"{field}: {problem}")
    return value


def optional_text(
    value: str | None, field: str, *, max_chars: int | None = None, max_bytes: int | None = None
) -> str | None:
    return None if value is None else text(value, field, max_chars=max_chars, max_bytes=max_bytes)


def integer(value: int, field: str, *, minimum: int = 0, maximum: int = INT32_MAX) -> int:
    if not minimum <= value <= maximum:
        raise Unstorable(f"{field}: must be between {minimum} and {maximum}")
    return value


def count(values: Sized, field: str, maximum: int) -> None:
    """Unstorable (422) for a list `field` of more than `maximum` items."""
    if len(values) > maximum:
        raise Unstorable(f"{field}: must have at most {maximum} items (it has {len(values)})")


def past_bounds(error_types: Any) -> bool:
    """Whether every one of a pydantic error's types is a bound (422), not
    a form error (400)."""
    types = list(error_types)
    return bool(types) and all(kind in BOUND_ERRORS for kind in types)


def time(value: datetime | None, field: str) -> datetime | None:
    """An aware time in UTC, or Unstorable for one that has no UTC
    equivalent (9999-12-31T23:00-05:00 is past the last datetime)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise Unstorable(f"{field}: must say its time zone")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise Unstorable(f"{field}: {value.isoformat()} is out of range") from None


_CONTAINERS = (dict, list)
_SCALARS = (str, float)  # what may hold what the database cannot
Path: TypeAlias = tuple[Any, ...]  # (parent path, key), the root (field,)


def _where(path: Path) -> str:
    keys: list[str | int] = []
    while len(path) == 2:
        path, key = path
        keys.append(key)
    where = str(path[0])
    for key in reversed(keys):
        where += f"[{key}]" if isinstance(key, int) else f".{key}" if where else str(key)
    return where or "body"


def _scalar(value: Any, path: Path, *, strings: bool) -> None:
    if isinstance(value, str):
        problem = _problem(value) if strings else None
        if problem is not None:
            raise Unstorable(f"{_where(path)}: {problem}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise Unstorable(f"{_where(path)}: must be a finite number")


def json_document(document: Any, field: str = "body", *, strings: bool = True) -> None:
    """Unstorable for a JSON document the database cannot keep as it is: a
    NUL or lone surrogate in a key or a string, a non-finite number (1e999
    parses as infinity), or nesting deeper than JSON_DEPTH. Names the first
    offending place. `strings=False` skips the strings, for a document whose
    source shows they cannot hold a NUL (no `\\u0000` in it) and whose parser
    refused lone surrogates. Paths are put together only for the message: a
    push of megabytes is walked in a fraction of its parsing time."""
    root: Path = (field,)
    if not isinstance(document, _CONTAINERS):
        _scalar(document, root, strings=strings)
        return
    stack: list[tuple[dict[str, Any] | list[Any], Path, int]] = [(document, root, 0)]
    while stack:
        container, path, depth = stack.pop()
        if depth >= JSON_DEPTH:
            raise Unstorable(f"{_where(path)}: nested more than {JSON_DEPTH} levels deep")
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, item in items:
            if strings and isinstance(key, str) and _problem(key) is not None:
                raise Unstorable(f"{_where(path)} key: {_problem(key)}")
            if isinstance(item, _CONTAINERS):
                stack.append((item, (path, key), depth + 1))
            elif isinstance(item, _SCALARS):
                _scalar(item, (path, key), strings=strings)
