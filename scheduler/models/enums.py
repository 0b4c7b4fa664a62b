"""Enumerations stored by value in the database."""

from __future__ import annotations

import enum

from scheduler.outcomes import Outcome
from scheduler.providers import Provider

__all__ = [
    "EventStatus",
    "FileStatus",
    "ModelStatus",
    "Outcome",
    "PlanStatus",
    "Provider",
    "RunSource",
    "RunStatus",
]


class EventStatus(enum.StrEnum):
    PENDING = "pending"  # stored, waiting for a worker
    HANDLED = "handled"  # turned into rows
    IGNORED = "ignored"  # stored for the record, nothing to do (ping)
    FAILED = "failed"  # the worker gave up; `error` says why


class FileStatus(enum.StrEnum):
    ADDED = "added"
    MODIFIED = "modified"
    REMOVED = "removed"
    RENAMED = "renamed"
    COPIED = "copied"


class RunSource(enum.StrEnum):
    JUNIT = "junit"
    JSON = "json"
    PYTEST = "pytest"
    IMPORT = "import"


class RunStatus(enum.StrEnum):
    PENDING = "pending"
    INGESTED = "ingested"
    FAILED = "failed"


class ModelStatus(enum.StrEnum):
    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"
    REJECTED = "rejected"


class PlanStatus(enum.StrEnum):
    PENDING = "pending"
    READY = "ready"  # scored by a trained model
    HEURISTIC = "heuristic"  # scored before the repository had a model
    FALLBACK = "fallback"  # something failed: everything runs
