"""Reading a repository's ingested builds back from the database, in the
shape the replay walks (`scheduler.risk.replay.Build`), with which of their
tests ran only because a plan's exploration sample drew them (from the
plans' decision records)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

import numpy as np
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
    Plan,
    PlanItem,
    RunStatus,
    SuiteRun,
)
from scheduler.planning.records import DecisionRecord, RecordError
from scheduler.risk.replay import WORSE, Build

# Plans whose decision records are read at once, and ranks asked for at
# once (bound parameters: SQLite's limit is in the thousands).
_PLANS_AT_ONCE = 200
_RANKS_AT_ONCE = 500


def explored_tests(session: Session, plan_ids: Iterable[int]) -> dict[int, dict[str, float]]:
    """For each plan, the tests its exploration sample drew (selected with a
    logged propensity below 1) and that propensity, by test name. Plans
    without a decision, or with one this riskrank cannot read, drew none;
    nor did a plan whose every dropped test ran (its evaluation says
    `expanded`): what ran there did not depend on the draw, each row counts once."""
    wanted = sorted(set(plan_ids))
    found: dict[int, dict[str, float]] = {}
    for start in range(0, len(wanted), _PLANS_AT_ONCE):
        chunk = wanted[start : start + _PLANS_AT_ONCE]
        for plan_id, blob, evaluation in session.execute(
            select(Plan.id, Plan.decision, Plan.evaluation).where(Plan.id.in_(chunk))
        ):
            if blob is None or (isinstance(evaluation, dict) and evaluation.get("expanded")):
                continue
            try:
                record = DecisionRecord.decode(bytes(blob))
            except RecordError:
                continue
            rows = np.flatnonzero((record.selected == 1) & (record.propensity < 1.0))
            if not rows.size:
                continue
            # The decision is in stored rank order: row r is the item of rank r + 1.
            drawn = dict(zip((rows + 1).tolist(), record.propensity[rows].tolist(), strict=True))
            ranks = list(drawn)
            tests = found.setdefault(plan_id, {})
            for first in range(0, len(ranks), _RANKS_AT_ONCE):
                names = session.execute(
                    select(PlanItem.rank, KnownTest.name)
                    .join(KnownTest, KnownTest.id == PlanItem.test_id)
                    .where(
                        PlanItem.plan_id == plan_id,
                        PlanItem.rank.in_(ranks[first : first + _RANKS_AT_ONCE]),
                    )
                )
                tests.update((name, drawn[rank]) for rank, name in names if drawn[rank] > 0)
    return found


def _selection(
    build: Build, plan_ids: Iterable[int], explored: Mapping[int, Mapping[str, float]]
) -> None:
    """Which of the build's tests ran only by exploration, and with what
    probability: the highest any of its plans drew it with (the more likely
    a test was to run, the less it stands for)."""
    for plan_id in plan_ids:
        for name, p in explored.get(plan_id, {}).items():
            if name in build.outcomes:
                build.selection[name] = max(p, build.selection.get(name, 0.0))


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
            SuiteRun.plan_id,
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
    plans: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        run_id, commit_id, run_key, at, plan_id, name, file, _attempt, outcome, duration, flaky = (
            row
        )
        key = f"{commit_id}/{run_key or f'run-{run_id}'}"
        keys[run_id] = key
        if plan_id is not None:
            plans[key].add(plan_id)
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
    if plans:
        explored = explored_tests(session, (p for ids in plans.values() for p in ids))
        for key, plan_ids in plans.items():
            _selection(builds[key], plan_ids, explored)
    return list(builds.values())
