"""Reading CI histories: the history JSONL format and the RETECS/COLEMAN CSV
format (../shared/datasets/README.md), as one report per build or shard.

Rows of one build that name the same test more than once are successive
attempts of it, in the order the file gives (RETECS files repeat a test when
it was run again within the build)."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scheduler.ingest.errors import MalformedPayload
from scheduler.ingest.json_results import ResultIn, case_results
from scheduler.ingest.results import CaseResult
from scheduler.ingest.testid import canonical_test_id, normalise_path
from scheduler.models.enums import FileStatus, Outcome

# The commit of a build from a history that has none (RETECS): its build id.
SYNTHETIC_COMMIT_PREFIX = "build-"


@dataclass(frozen=True)
class FileChange:
    path: str
    status: FileStatus
    old_path: str | None = None


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


class _ChangedFileIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    path: str = Field(min_length=1)
    status: FileStatus = FileStatus.MODIFIED
    old_path: str | None = None


class _BuildIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    build: str | int
    commit: str | None = Field(default=None, max_length=64)
    time: datetime | None = None
    branch: str | None = None
    changed_files: list[_ChangedFileIn] = Field(default_factory=list)
    results: list[ResultIn]


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
                changed_files=tuple(
                    FileChange(
                        normalise_path(change.path),
                        change.status,
                        normalise_path(change.old_path) if change.old_path else None,
                    )
                    for change in build.changed_files
                ),
                results=tuple(_number_attempts(case_results(build.results))),
            )


def _number_attempts(results: list[CaseResult]) -> Iterator[CaseResult]:
    """Repeated tests without explicit attempts become attempts 1, 2, …"""
    seen: dict[str, int] = defaultdict(int)
    for result in results:
        seen[result.test] += 1
        if result.attempt == 1 and seen[result.test] > 1:
            yield CaseResult(
                test=result.test,
                outcome=result.outcome,
                duration=result.duration,
                attempt=seen[result.test],
                file=result.file,
                message=result.message,
            )
        else:
            yield result


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
        attempts: dict[tuple[str, str, str], int] = defaultdict(int)
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
            test = canonical_test_id(name=name)
            attempts[(build, variant, test)] += 1
            groups[(build, variant)].append(
                CaseResult(
                    test=test,
                    outcome=Outcome.FAILED if verdict == "1" else Outcome.PASSED,
                    duration=_float(row.get("Duration") or "", where),
                    attempt=attempts[(build, variant, test)],
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
            results=tuple(groups[(build, variant)]),
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
