"""What the providers' APIs say a change is, in one shape for both:
the files of a pull request, merge request or comparison, and the commits
of a comparison. Values the database cannot hold are dropped here, as the
push parser drops them (scheduler.limits)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scheduler import limits
from scheduler.ingest.errors import Unstorable
from scheduler.models.enums import FileStatus
from scheduler.providers_api.http import ProviderApiError


@dataclass(frozen=True)
class FileDiff:
    path: str
    status: FileStatus
    old_path: str | None = None
    additions: int | None = None
    deletions: int | None = None


@dataclass(frozen=True)
class ComparedCommit:
    sha: str
    parent_sha: str | None
    author_name: str | None
    author_time: datetime | None
    message: str | None


@dataclass(frozen=True)
class Comparison:
    """The commits from a base to a head (oldest first) and the files the
    head changed since their merge base."""

    commits: tuple[ComparedCommit, ...]
    files: tuple[FileDiff, ...]


def listed_files(
    pages: Iterable[Any], parse: Callable[[Any], FileDiff | None], what: str
) -> list[FileDiff]:
    """The files listed over every page (each a JSON list of `parse`'s
    input; what `parse` cannot read is left out), once per path: a pull
    request's (GitHub) or a merge request's (GitLab). ProviderApiError for a
    page that is no list, naming `what`."""
    files: dict[str, FileDiff] = {}
    for page in pages:
        if not isinstance(page, list):
            raise ProviderApiError(f"{what}: not a file list")
        for raw in page:
            diff = parse(raw)
            if diff is not None:
                files[diff.path] = diff
    return list(files.values())


def _fits(
    value: object, *, max_chars: int | None = None, max_bytes: int | None = None
) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return limits.text(value, "value", max_chars=max_chars, max_bytes=max_bytes)
    except Unstorable:
        return None


def fits_path(path: object) -> str | None:
    """A path the changed_files table holds, else None."""
    return _fits(path, max_bytes=limits.PATH_BYTES)


def fits_sha(sha: object) -> str | None:
    return _fits(sha, max_chars=limits.SHA_CHARS)


def fits_name(name: object) -> str | None:
    return _fits(name[: limits.NAME_CHARS] if isinstance(name, str) else None)


def fits_message(message: object) -> str | None:
    return _fits(message)


def fits_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    try:
        return limits.time(parsed, "time")
    except Unstorable:
        return None


def count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limits.INT32_MAX:
        return value
    return None


def diff_counts(diff: object) -> tuple[int | None, int | None]:
    """The lines a unified diff adds and deletes (GitLab gives only the diff)."""
    if not isinstance(diff, str):
        return None, None
    added = deleted = 0
    for line in diff.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            deleted += 1
    return added, deleted
