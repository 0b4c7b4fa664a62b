"""Importing a CI history through the same ingestion as live results, and
exporting one in the history JSONL format (which imports again)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from scheduler.db import Database
from scheduler.ingest import hunks
from scheduler.ingest.history import FileChange, HistoryReport
from scheduler.models import (
    ChangedFile,
    Commit,
    Execution,
    KnownTest,
    Repository,
    RunSource,
    RunStatus,
    SuiteRun,
)
from scheduler.models.base import utcnow
from scheduler.services import runs
from scheduler.services.ingestion import Ingestor
from scheduler.services.sql import insert_rows_ignoring

IMPORT_KEY_PREFIX = "import:"


@dataclass
class ImportTally:
    reports: int = 0
    skipped: int = 0  # imported before: the import is idempotent
    executions: int = 0


def _imported_keys(session: Session, repository_id: int) -> set[tuple[str, str]]:
    """(commit, run key) of the reports imported earlier."""
    rows = session.execute(
        select(Commit.sha, SuiteRun.run_key)
        .join(Commit, Commit.id == SuiteRun.commit_id)
        .where(SuiteRun.repository_id == repository_id, SuiteRun.source == RunSource.IMPORT)
    )
    return {(sha, key) for sha, key in rows if key}


def record_changed_files(
    session: Session, *, commit_id: int, changes: Iterable[FileChange]
) -> None:
    """A history's changed files of a commit, with their line counts (scoring
    reads them as `changed_lines`, so replay must find them too) and their
    hunks (bounded: scheduler.ingest.hunks); a path recorded before keeps
    its row."""
    insert_rows_ignoring(
        session,
        ChangedFile,
        [
            {
                "commit_id": commit_id,
                "path": change.path,
                "status": change.status,
                "old_path": change.old_path,
                "additions": change.additions,
                "deletions": change.deletions,
                "hunks": hunks.to_json(change.hunks),
            }
            for change in changes
        ],
        conflict=["commit_id", "path"],
    )


def import_report(
    session: Session, ingestor: Ingestor, *, repository: Repository, report: HistoryReport
) -> int:
    """Store one report of a history as a run and fold it into `ingestor`;
    returns its executions."""
    commit_id = runs.ensure_commit(
        session, repository=repository, sha=report.commit, branch=report.branch
    )
    if report.time is not None:
        session.execute(
            update(Commit)
            .where(Commit.id == commit_id, Commit.author_time.is_(None))
            .values(author_time=report.time)
        )
    record_changed_files(session, commit_id=commit_id, changes=report.changed_files)
    at = report.time or utcnow()
    run = SuiteRun(
        repository_id=repository.id,
        commit_id=commit_id,
        source=RunSource.IMPORT,
        run_key=IMPORT_KEY_PREFIX + report.build,
        status=RunStatus.PENDING,
        received_at=at,
    )
    session.add(run)
    session.flush()
    summary = ingestor.ingest(run, report.results, at=at)
    run.status = RunStatus.INGESTED
    run.ingested_at = utcnow()
    return summary.executions


def import_history(
    database: Database,
    *,
    repository_id: int,
    reports: Iterable[HistoryReport],
    batch: int = 100,
    progress: Callable[[HistoryReport], None] | None = None,
) -> ImportTally:
    """Import reports in order, committing every `batch` reports; reports
    imported before (same commit and build) are skipped."""
    tally = ImportTally()
    with database.session() as session:
        done = _imported_keys(session, repository_id)
    pending: list[HistoryReport] = []

    def flush() -> None:
        with database.session() as session:
            repository = session.get_one(Repository, repository_id)
            ingestor = Ingestor(session, repository_id)
            for report in pending:
                tally.executions += import_report(
                    session, ingestor, repository=repository, report=report
                )
                tally.reports += 1
                if progress:
                    progress(report)
            ingestor.flush()
        pending.clear()

    # Shards of one build arrive as consecutive reports sharing a build id.
    seen_now: set[tuple[str, str]] = set()
    for report in reports:
        key = (report.commit, IMPORT_KEY_PREFIX + report.build)
        if key in done and key not in seen_now:
            tally.skipped += 1
            if progress:
                progress(report)
            continue
        seen_now.add(key)
        pending.append(report)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    return tally


# --- export -------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def exported_runs(session: Session, *, repository_id: int) -> int:
    """How many objects `export_history` yields: the ingested runs."""
    return (
        session.scalar(
            select(func.count())
            .select_from(SuiteRun)
            .where(SuiteRun.repository_id == repository_id, SuiteRun.status == RunStatus.INGESTED)
        )
        or 0
    )


def export_history(session: Session, *, repository_id: int) -> Iterator[dict[str, Any]]:
    """One history JSONL object per ingested run, in ingestion order. Runs of
    one build (shards) share their `build`, so they import again as one."""
    run_rows = session.execute(
        select(SuiteRun.id, SuiteRun.run_key, SuiteRun.received_at, Commit.id, Commit.sha)
        .join(Commit, Commit.id == SuiteRun.commit_id)
        .where(SuiteRun.repository_id == repository_id, SuiteRun.status == RunStatus.INGESTED)
        .order_by(SuiteRun.id)
    ).all()
    branches = {
        commit_id: branch
        for commit_id, branch in session.execute(
            select(Commit.id, Commit.branch).where(Commit.repository_id == repository_id)
        )
    }
    for run_id, run_key, received_at, commit_id, sha in run_rows:
        changed = [
            {
                "path": path,
                "status": status.value,
                **({"old_path": old} if old else {}),
                **({"additions": added, "deletions": deleted} if added is not None else {}),
                **({"hunks": stored} if stored is not None else {}),
            }
            for path, status, old, added, deleted, stored in session.execute(
                select(
                    ChangedFile.path,
                    ChangedFile.status,
                    ChangedFile.old_path,
                    ChangedFile.additions,
                    ChangedFile.deletions,
                    ChangedFile.hunks,
                )
                .where(ChangedFile.commit_id == commit_id)
                .order_by(ChangedFile.id)
            )
        ]
        results = [
            {
                "test": name,
                "outcome": outcome.value,
                "duration": duration,
                "attempt": attempt,
                **({"file": file} if file else {}),
            }
            for name, outcome, duration, attempt, file in session.execute(
                select(
                    KnownTest.name,
                    Execution.outcome,
                    Execution.duration,
                    Execution.attempt,
                    KnownTest.file,
                )
                .join(KnownTest, KnownTest.id == Execution.test_id)
                .where(Execution.run_id == run_id)
                .order_by(Execution.id)
            )
        ]
        if run_key and run_key.startswith(IMPORT_KEY_PREFIX):
            build = run_key.removeprefix(IMPORT_KEY_PREFIX)
        else:
            build = f"{sha}/{run_key or f'run-{run_id}'}"
        yield {
            "build": build,
            "commit": sha,
            "time": _iso(received_at),
            "branch": branches.get(commit_id),
            "changed_files": changed,
            "results": results,
        }


def write_jsonl(lines: Iterable[dict[str, Any]], stream: IO[str]) -> int:
    count = 0
    for line in lines:
        stream.write(json.dumps(line, separators=(",", ":")) + "\n")
        count += 1
    return count
