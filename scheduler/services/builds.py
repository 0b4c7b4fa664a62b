"""Reading a repository's ingested builds back from the database, in the
shape the replay walks (`scheduler.risk.replay.Build`)."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.ingest import hunks
from scheduler.ingest.history import changed_lines
from scheduler.models import (
    ChangedFile,
    Commit,
    Execution,
    KnownTest,
    Outcome,
    RunStatus,
    SuiteRun,
)
from scheduler.risk.replay import WORSE, Build


def load_builds(session: Session, *, repository_id: int) -> list[Build]:
    """Every ingested build of a repository, in the order they were ingested."""
    paths: dict[int, list[str]] = defaultdict(list)
    counts: dict[int, list[tuple[int | None, int | None]]] = defaultdict(list)
    stored: dict[int, list[hunks.StoredHunks | None]] = defaultdict(list)
    for commit_id, path, additions, deletions, file_hunks in session.execute(
        select(
            ChangedFile.commit_id,
            ChangedFile.path,
            ChangedFile.additions,
            ChangedFile.deletions,
            ChangedFile.hunks,
        )
        .join(Commit, Commit.id == ChangedFile.commit_id)
        .where(Commit.repository_id == repository_id)
        .order_by(ChangedFile.path)
    ):
        paths[commit_id].append(path)
        counts[commit_id].append((additions, deletions))
        stored[commit_id].append(file_hunks)
    rows = session.execute(
        select(
            SuiteRun.id,
            SuiteRun.commit_id,
            SuiteRun.run_key,
            SuiteRun.received_at,
            KnownTest.name,
            KnownTest.file,
            Execution.attempt,
            Execution.outcome,
            Execution.duration,
            Execution.flaky,
        )
        .join(Execution, Execution.run_id == SuiteRun.id)
        .join(KnownTest, KnownTest.id == Execution.test_id)
        .where(SuiteRun.repository_id == repository_id, SuiteRun.status == RunStatus.INGESTED)
        .order_by(SuiteRun.id, Execution.test_id, Execution.attempt)
    )
    builds: dict[str, Build] = {}
    finals: dict[tuple[int, str], tuple[Outcome, float | None, bool]] = {}
    keys: dict[int, str] = {}
    for run_id, commit_id, run_key, at, name, file, _attempt, outcome, duration, flaky in rows:
        key = f"{commit_id}/{run_key or f'run-{run_id}'}"
        keys[run_id] = key
        if key not in builds:
            builds[key] = Build(
                key=key,
                at=at,
                paths=tuple(paths.get(commit_id, ())),
                changed_lines=changed_lines(counts.get(commit_id, ())),
                symbols=hunks.stored_symbols(stored.get(commit_id, ())),
            )
        builds[key].files.setdefault(name, file)
        finals[(run_id, name)] = (outcome, duration, flaky)  # the last attempt wins
    for (run_id, name), (outcome, duration, flaky) in finals.items():
        build = builds[keys[run_id]]
        if flaky:
            build.flaky.add(name)
        if outcome is Outcome.SKIPPED:
            continue
        seen = build.outcomes.get(name)
        if seen is None or WORSE[outcome] > WORSE[seen]:
            build.outcomes[name] = outcome
            build.durations[name] = duration
    return list(builds.values())
