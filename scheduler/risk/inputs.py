"""The feature inputs of a repository's tests for one change, read from the
database in a few set-based queries (never one per test)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.models import ChangedFile, FileTestLink, KnownTest, KnownTestStats
from scheduler.risk.features import ChangeColumns, HistoryColumns, LinkColumns
from scheduler.services.sql import chunks


def load_history(
    session: Session, *, repository_id: int, names: Sequence[str] | None = None
) -> tuple[list[int], HistoryColumns]:
    """The active tests of a repository (or those of `names` it knows) with
    their statistics as they stand: test ids in row order, and the columns."""
    query = (
        select(
            KnownTest.id,
            KnownTest.name,
            KnownTest.file,
            KnownTest.first_seen_at,
            KnownTestStats.runs,
            KnownTestStats.failures,
            KnownTestStats.recent,
            KnownTestStats.builds_since_failure,
            KnownTestStats.flips,
            KnownTestStats.flaky_runs,
            KnownTestStats.duration_mean,
        )
        .outerjoin(KnownTestStats, KnownTestStats.test_id == KnownTest.id)
        .where(KnownTest.repository_id == repository_id)
        .order_by(KnownTest.id)
    )
    if names is None:
        rows = list(session.execute(query.where(KnownTest.is_active)))
    else:
        rows = []
        unique = list(dict.fromkeys(names))
        for part in chunks(unique):
            rows.extend(session.execute(query.where(KnownTest.name.in_(part))))
    columns: list[tuple[Any, ...]] = (
        list(zip(*rows, strict=True)) if rows else [() for _ in range(11)]
    )
    return list(columns[0]), HistoryColumns.from_sequences(
        names=columns[1],
        files=columns[2],
        first_seen=columns[3],
        runs=columns[4],
        failures=columns[5],
        recent=columns[6],
        builds_since_failure=columns[7],
        flips=columns[8],
        flaky_runs=columns[9],
        duration_mean=columns[10],
    )


def load_change(session: Session, *, commit_id: int) -> ChangeColumns:
    """The commit's changed paths; changed lines only when known for every file."""
    rows = list(
        session.execute(
            select(ChangedFile.path, ChangedFile.additions, ChangedFile.deletions)
            .where(ChangedFile.commit_id == commit_id)
            .order_by(ChangedFile.path)
        )
    )
    lines: int | None = None
    counts = [(a, d) for _, a, d in rows]
    if counts and all(a is not None and d is not None for a, d in counts):
        lines = sum((a or 0) + (d or 0) for a, d in counts)
    return ChangeColumns.of((path for path, _, _ in rows), lines)


def load_links(
    session: Session, *, repository_id: int, test_ids: Sequence[int], change: ChangeColumns
) -> LinkColumns:
    """file_test_links between the changed paths and the candidate tests."""
    if not change.paths or not test_ids:
        return LinkColumns.empty()
    row_of = {test_id: row for row, test_id in enumerate(test_ids)}
    path_of = {path: index for index, path in enumerate(change.paths)}
    tests: list[int] = []
    paths: list[int] = []
    ran: list[int] = []
    failed: list[int] = []
    for part in chunks(change.paths):
        for test_id, path, changed_together, failed_together in session.execute(
            select(
                FileTestLink.test_id,
                FileTestLink.path,
                FileTestLink.changed_together,
                FileTestLink.failed_together,
            ).where(
                FileTestLink.repository_id == repository_id,
                FileTestLink.path.in_(part),
            )
        ):
            row = row_of.get(test_id)
            if row is not None:
                tests.append(row)
                paths.append(path_of[path])
                ran.append(changed_together)
                failed.append(failed_together)
    return LinkColumns.from_sequences(
        test_index=tests, path_index=paths, changed_together=ran, failed_together=failed
    )
