"""Reading CI histories: the history JSONL format and the RETECS/COLEMAN CSV
format (../shared/datasets/README.md), as one report per build or shard.

Rows of one report that name the same test more than once, without attempt
numbers (RETECS files repeat a test when it ran again within the build), are
one result: failed when any row failed (an error when any row errored), its
duration the sum of the rows'. Every reader of a history (import, replay,
the backtest and its evaluation) takes this one result, so they count the
same failing builds. Rows with explicit `attempt` numbers (an export of live
reruns) stay attempts: the final one is the test's outcome, as ingestion
counts a live rerun."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scheduler import limits
from scheduler.ingest.errors import MalformedPayload
from scheduler.ingest.hunks import Hunk, bounded
from scheduler.ingest.json_results import ResultIn, case_results
from scheduler.ingest.results import CaseResult
from scheduler.ingest.testid import canonical_test_id, normalise_job, normalise_path, with_job
from scheduler.models.enums import FileStatus, Outcome

# The commit of a build from a history that has none (RETECS): its build id.
SYNTHETIC_COMMIT_PREFIX = "build-"


@dataclass(frozen=True)
class FileChange:
    """A changed file; its line counts and hunks only when the history has them
    (hunks within scheduler.ingest.hunks' bounds, as the database keeps them)."""

    path: str
    status: FileStatus
    old_path: str | None = None
    additions: int | None = None
    deletions: int | None = None
    hunks: tuple[Hunk, ...] | None = None

    @property
    def lines(self) -> int | None:
        """Added plus removed lines, None when either count is unknown."""
        if self.additions is None or self.deletions is None:
            return None
        return self.additions + self.deletions


def changed_lines(counts: Iterable[tuple[int | None, int | None]]) -> int | None:
    """The lines a change adds and removes over its files (additions,
    deletions), None unless every file says both: a partial sum would read
    as a smaller change than the real one."""
    total = 0
    known = False
    for additions, deletions in counts:
        if additions is None or deletions is None:
            return None
        total += additions + deletions
        known = True
    return total if known else None


@dataclass(frozen=True)
class HistoryReport:
    """One report of a build: a whole build, or one of its shards or variants
    (reports with the same `build` are one build's outcomes)."""

    build: str
    commit: str
    time: datetime | None
    branch: str | None
    changed_files: tuple[FileChange, ...]
    results: tuple[CaseResult, ...] = field(repr=False)
    # The CI job (matrix variant) that ran it, None when the history says none.
    job: str | None = None


class HistoryError(MalformedPayload):
    """A history file that cannot be read; the message says where."""


def _open_text(path: Path) -> IO[str]:
    with path.open("rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    if gzipped:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def detect_format(path: Path) -> str:
    """`jsonl` or `retecs`, from the first non-blank character of the file."""
    with _open_text(path) as stream:
        for line in stream:
            if line.strip():
                return "jsonl" if line.lstrip().startswith("{") else "retecs"
    raise HistoryError(f"{path} is empty")


# --- history JSONL ------------------------------------------------------------


class _HunkIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    old_start: int = Field(ge=0)
    old_lines: int = Field(ge=0)
    new_start: int = Field(ge=0)
    new_lines: int = Field(ge=0)
    symbol: str | None = None


class _ChangedFileIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    path: str = Field(min_length=1)
    status: FileStatus = FileStatus.MODIFIED
    old_path: str | None = None
    additions: int | None = Field(default=None, ge=0)
    deletions: int | None = Field(default=None, ge=0)
    hunks: list[_HunkIn] | None = None

    @model_validator(mode="after")
    def _both_counts(self) -> _ChangedFileIn:
        if (self.additions is None) != (self.deletions is None):
            raise ValueError(f"{self.path}: give both additions and deletions, or neither")
        return self

    def change(self) -> FileChange:
        return FileChange(
            normalise_path(self.path),
            self.status,
            normalise_path(self.old_path) if self.old_path else None,
            additions=self.additions,
            deletions=self.deletions,
            hunks=None
            if self.hunks is None
            else bounded(
                [
                    Hunk(h.old_start, h.old_lines, h.new_start, h.new_lines, h.symbol)
                    for h in self.hunks
                ]
            ),
        )


class _BuildIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    build: str | int
    commit: str | None = Field(default=None, max_length=64)
    time: datetime | None = None
    branch: str | None = None
    changed_files: list[_ChangedFileIn] = Field(default_factory=list)
    results: list[ResultIn]
    job: str | None = Field(default=None, max_length=limits.NAME_CHARS)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def read_jsonl(path: Path) -> Iterator[HistoryReport]:
    with _open_text(path) as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                raw: Any = json.loads(line)
                build = _BuildIn.model_validate(raw)
            except (ValueError, ValidationError) as error:
                raise HistoryError(f"{path}:{number}: not a history line: {error}") from None
            build_id = str(build.build)
            yield HistoryReport(
                build=build_id,
                commit=build.commit or SYNTHETIC_COMMIT_PREFIX + build_id,
                time=_aware(build.time),
                branch=build.branch,
                changed_files=tuple(change.change() for change in build.changed_files),
                results=_jsonl_results(build.results),
                job=normalise_job(build.job),
            )


def _jsonl_results(rows: list[ResultIn]) -> tuple[CaseResult, ...]:
    """A test's rows without attempt numbers are one result (see the module
    docstring); with them, repeated attempt numbers become 1, 2, … in order."""
    numbered = frozenset(row.test for row in rows if "attempt" in row.model_fields_set)
    return tuple(merge_repeats(case_results(rows), attempts_of=numbered))


_SEVERITY = {Outcome.SKIPPED: 0, Outcome.PASSED: 1, Outcome.FAILED: 2, Outcome.ERROR: 3}


def merge_repeats(
    results: Iterable[CaseResult], *, attempts_of: frozenset[str] = frozenset()
) -> list[CaseResult]:
    """One result per test, in first-seen order: the worst outcome of its rows
    (a skip only when every row skipped), durations added over the rows that
    ran (a skip's duration counts for nothing, as in ingestion). The tests of
    `attempts_of` keep their rows as attempts; an attempt 1 repeated becomes
    2, 3, … in the order given."""
    groups: dict[str, list[CaseResult]] = {}
    for result in results:
        groups.setdefault(result.test, []).append(result)
    merged: list[CaseResult] = []
    for test, rows in groups.items():
        if test in attempts_of:
            merged.extend(
                replace(row, attempt=number) if row.attempt == 1 and number > 1 else row
                for number, row in enumerate(rows, start=1)
            )
        elif len(rows) == 1:
            merged.append(rows[0])
        else:
            merged.append(_one_result(rows))
    return merged


def _one_result(rows: list[CaseResult]) -> CaseResult:
    worst = max(rows, key=lambda r: _SEVERITY[r.outcome])
    ran = [r for r in rows if r.outcome is not Outcome.SKIPPED] or rows
    durations = [r.duration for r in ran if r.duration is not None]
    return CaseResult(
        test=worst.test,
        outcome=worst.outcome,
        duration=sum(durations) if durations else None,
        file=next((r.file for r in rows if r.file), None),
        message=worst.message,
    )


# --- RETECS / COLEMAN CSV -----------------------------------------------------

_REQUIRED = ("Name", "Duration", "Verdict", "Cycle")


def _float(value: str, where: str) -> float | None:
    value = value.strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        raise HistoryError(f"{where}: {value!r} is not a number") from None
    return number if number >= 0 else None


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return _aware(datetime.fromisoformat(value.strip()))
    except ValueError:
        return None


def read_retecs(path: Path) -> Iterator[HistoryReport]:
    """Builds are `BuildId` (or `Cycle` in files without one), oldest first by
    number; a `Variant` column splits a build into one report per variant."""
    with _open_text(path) as stream:
        reader = csv.DictReader(stream, delimiter=";")
        columns = reader.fieldnames or []
        missing = [name for name in _REQUIRED if name not in columns]
        if missing:
            raise HistoryError(f"{path}: not a RETECS/COLEMAN CSV, missing {', '.join(missing)}")
        build_column = "BuildId" if "BuildId" in columns else "Cycle"
        groups: dict[tuple[str, str], list[CaseResult]] = defaultdict(list)
        times: dict[str, datetime] = {}
        for number, row in enumerate(reader, start=2):
            where = f"{path}:{number}"
            build = (row.get(build_column) or "").strip()
            name = (row.get("Name") or "").strip()
            if not build or not name:
                raise HistoryError(f"{where}: a row needs {build_column} and Name")
            verdict = (row.get("Verdict") or "").strip()
            if verdict not in ("0", "1"):
                raise HistoryError(f"{where}: Verdict must be 0 or 1, not {verdict!r}")
            variant = (row.get("Variant") or "").strip()
            groups[(build, variant)].append(
                CaseResult(
                    test=canonical_test_id(name=name),
                    outcome=Outcome.FAILED if verdict == "1" else Outcome.PASSED,
                    duration=_float(row.get("Duration") or "", where),
                )
            )
            moment = _time(row.get("LastRun"))
            if moment is not None and (build not in times or moment > times[build]):
                times[build] = moment

    def order(key: tuple[str, str]) -> tuple[int, str, str]:
        build, variant = key
        return (int(build) if build.isdigit() else 0, build, variant)

    for build, variant in sorted(groups, key=order):
        yield HistoryReport(
            build=build,
            commit=SYNTHETIC_COMMIT_PREFIX + build,
            time=times.get(build),
            branch=None,
            changed_files=(),
            results=tuple(merge_repeats(groups[(build, variant)])),
            job=normalise_job(variant),
        )


def _unreadable(path: Path, error: Exception) -> HistoryError:
    """A file that cannot be read, said plainly: a truncated gzip, another
    encoding than UTF-8, a vanished file."""
    if isinstance(error, UnicodeDecodeError):
        return HistoryError(f"{path} is not UTF-8 text (byte {error.start})")
    return HistoryError(f"{path} cannot be read: {error}")


def _readable(reports: Iterator[HistoryReport], path: Path) -> Iterator[HistoryReport]:
    try:
        yield from reports
    except (UnicodeDecodeError, EOFError, OSError) as error:
        raise _unreadable(path, error) from None


def read_history(path: Path, fmt: str = "auto") -> Iterator[HistoryReport]:
    if fmt == "auto":
        try:
            fmt = detect_format(path)
        except (UnicodeDecodeError, EOFError, OSError) as error:
            raise _unreadable(path, error) from None
    if fmt == "jsonl":
        return _readable(read_jsonl(path), path)
    if fmt == "retecs":
        return _readable(read_retecs(path), path)
    raise HistoryError(f"unknown history format {fmt!r}: use jsonl or retecs")


def jobs_apart(reports: Iterable[HistoryReport]) -> Iterator[HistoryReport]:
    """The reports with each test's history kept per CI job: a report that
    names its job has its tests' ids in that job (testid.with_job)."""
    for report in reports:
        if report.job is None:
            yield report
        else:
            yield replace(
                report,
                results=tuple(
                    replace(result, test=with_job(result.test, report.job))
                    for result in report.results
                ),
            )
