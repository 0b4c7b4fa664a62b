"""The feature inputs of a repository's tests for one change, read from the
database in a few set-based queries (never one per test).

Each read has two ways: SQLAlchemy rows, which serve both backends, and on
PostgreSQL a faster one that takes the driver's cursor and hands numpy the
columns (scoring 10,000 tests must stay far below a second, and building
ten thousand ORM rows and per-row dictionaries was most of it). The two give
the same columns; tests/services/test_feature_inputs.py holds them to it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.ingest import hunks
from scheduler.ingest.history import changed_lines
from scheduler.models import ChangedFile, FileTestLink, KnownTest, KnownTestStats, Repository
from scheduler.risk.columns import ChangeColumns, HistoryColumns, LinkColumns
from scheduler.risk.links import decayed
from scheduler.services.sql import chunks


def _driver(session: Session) -> psycopg.Connection[Any] | None:
    """The psycopg connection under the session's, None on another backend
    (or driver)."""
    driver = session.connection().connection.driver_connection
    return driver if isinstance(driver, psycopg.Connection) else None


def load_history(
    session: Session,
    *,
    repository_id: int,
    names: Sequence[str] | None = None,
    portable: bool = False,
) -> tuple[list[int], HistoryColumns]:
    """The active tests of a repository (or those of `names` it knows) with
    their statistics as they stand: test ids in row order, and the columns.
    `portable` reads through SQLAlchemy rows even on PostgreSQL."""
    driver = None if portable or names is not None else _driver(session)
    if driver is not None:
        return _active_history_postgresql(driver, repository_id)
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


# The defaults of HistoryColumns.from_sequences, applied by the server: a test
# without statistics has 0 runs and an empty `recent`, an unknown is NaN.
# EXTRACT(EPOCH ...) is exact (numeric); float8 rounds it as Python's
# datetime.timestamp() does.
_ACTIVE_HISTORY = """
SELECT k.id, k.name, k.file, EXTRACT(EPOCH FROM k.first_seen_at)::float8,
       COALESCE(s.runs, 0), COALESCE(s.failures, 0), COALESCE(s.recent, ''),
       COALESCE(s.builds_since_failure, 'NaN'::float8), COALESCE(s.flips, 0),
       COALESCE(s.flaky_runs, 0), COALESCE(s.duration_mean, 'NaN'::float8)
FROM known_tests AS k LEFT JOIN test_stats AS s ON s.test_id = k.id
WHERE k.repository_id = %s AND k.is_active
ORDER BY k.id
"""


def _active_history_postgresql(
    driver: psycopg.Connection[Any], repository_id: int
) -> tuple[list[int], HistoryColumns]:
    with driver.cursor(binary=True) as cursor:
        rows = cursor.execute(_ACTIVE_HISTORY, (repository_id,)).fetchall()
    columns: list[tuple[Any, ...]] = (
        list(zip(*rows, strict=True)) if rows else [() for _ in range(11)]
    )

    def floats(number: int) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.array(columns[number], dtype=np.float64).reshape(-1)

    return list(columns[0]), HistoryColumns(
        names=columns[1],
        files=columns[2],
        first_seen=floats(3),
        runs=floats(4),
        failures=floats(5),
        recent=columns[6],
        builds_since_failure=floats(7),
        flips=floats(8),
        flaky_runs=floats(9),
        duration_mean=floats(10),
    )


def load_change(session: Session, *, commit_id: int) -> ChangeColumns:
    """The commit's changed paths; changed lines only when known for every
    file; the symbols its files' hunks name."""
    rows = list(
        session.execute(
            select(
                ChangedFile.path, ChangedFile.additions, ChangedFile.deletions, ChangedFile.hunks
            )
            .where(ChangedFile.commit_id == commit_id)
            .order_by(ChangedFile.path)
        )
    )
    # The rules replay applies too, so that training sees what serving sees.
    lines = changed_lines((a, d) for _, a, d, _ in rows)
    symbols = hunks.stored_symbols(stored for *_, stored in rows)
    return ChangeColumns.of((path for path, *_ in rows), lines, symbols)


def load_links(
    session: Session,
    *,
    repository_id: int,
    test_ids: Sequence[int],
    change: ChangeColumns,
    portable: bool = False,
) -> LinkColumns:
    """file_test_links between the changed paths and the candidate tests
    (in no particular order), decayed to the repository's newest build as the
    replay reads them (scheduler.risk.links). `portable` as for load_history."""
    if not change.paths or not test_ids:
        return LinkColumns.empty()
    now = session.scalar(select(Repository.build_count).where(Repository.id == repository_id))
    now = now or 0
    driver = None if portable else _driver(session)
    if driver is not None:
        return _links_postgresql(driver, repository_id, test_ids, change, now)
    row_of = {test_id: row for row, test_id in enumerate(test_ids)}
    path_of = {path: index for index, path in enumerate(change.paths)}
    tests: list[int] = []
    paths: list[int] = []
    ran: list[float] = []
    failed: list[float] = []
    valued_at: list[int] = []
    for part in chunks(change.paths):
        for test_id, path, changed_together, failed_together, valued in session.execute(
            select(
                FileTestLink.test_id,
                FileTestLink.path,
                FileTestLink.changed_together,
                FileTestLink.failed_together,
                FileTestLink.valued_at,
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
                valued_at.append(valued)
    return LinkColumns.from_sequences(
        test_index=tests,
        path_index=paths,
        changed_together=decayed(ran, valued_at, now),
        failed_together=decayed(failed, valued_at, now),
    )


# Every link as one 32-byte record (test id, path's position in the change,
# the two counts and the build they are valued at) in one bytea: numpy reads
# fifty thousand links straight from it, where rows cost a Python tuple each.
_LINKS = """
SELECT string_agg(
    int8send(l.test_id) || int4send((p.number - 1)::int4)
    || float8send(l.changed_together) || float8send(l.failed_together)
    || int4send(l.valued_at::int4),
    ''::bytea)
FROM file_test_links AS l
JOIN unnest(%s::text[]) WITH ORDINALITY AS p(path, number) ON p.path = l.path
WHERE l.repository_id = %s
"""
_LINK_RECORD = np.dtype(
    [("test", ">i8"), ("path", ">i4"), ("ran", ">f8"), ("failed", ">f8"), ("valued_at", ">i4")]
)


def _links_postgresql(
    driver: psycopg.Connection[Any],
    repository_id: int,
    test_ids: Sequence[int],
    change: ChangeColumns,
    now: int,
) -> LinkColumns:
    with driver.cursor(binary=True) as cursor:
        row = cursor.execute(_LINKS, (list(change.paths), repository_id)).fetchone()
    data = row[0] if row is not None else None
    if not data:
        return LinkColumns.empty()
    records = np.frombuffer(data, dtype=_LINK_RECORD)
    # Test id -> row of the candidates, by binary search over the sorted ids.
    ids = np.asarray(test_ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    position = np.searchsorted(ids[order], records["test"])
    position[position == len(ids)] = 0
    rows = order[position]
    known = ids[rows] == records["test"]
    return LinkColumns.from_sequences(
        test_index=rows[known],
        path_index=records["path"][known],
        changed_together=decayed(records["ran"][known], records["valued_at"][known], now),
        failed_together=decayed(records["failed"][known], records["valued_at"][known], now),
    )
