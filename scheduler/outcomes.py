"""A test's outcome in one run. A module of its own, outside
`scheduler.models`, so that the pure risk code (`scheduler.risk`) can name
outcomes without loading SQLAlchemy and every model; `scheduler.models.enums`
stores it by value like its other enumerations."""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"
