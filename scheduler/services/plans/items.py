"""A plan's tests as the policy reads them: the payload the worker stored
when it scored the commit, with the statistics as they stand now.

The payload carries the statistics its scores came from, as of the
repository's statistics version then. While no outcome has been ingested
since (the version is the same), serving reads nothing else; after, the
statistics of the tests those ingestions changed (each records them,
`StatsChange`) are read again and kept for that version, so the policy
still sees a test that failed since the plan was scored."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from typing import Any, overload

import numpy as np
import numpy.typing as npt
import psycopg
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from scheduler.models import KnownTestStats, Plan, StatsChange
from scheduler.planning.policy import Candidates
from scheduler.planning.records import Payload, failed_runs_ago
from scheduler.risk import heuristic
from scheduler.risk.features import NEW_TEST_PRIOR
from scheduler.services.plans.cache import Lru, database_key
from scheduler.services.plans.lookup import Found

# The heuristic's score of a test riskrank has never seen: what a collected
# test missing from the commit's scores gets as its probability.
NEW_TEST_PROBABILITY = heuristic.BASE + heuristic.WEIGHTS["new test"] * NEW_TEST_PRIOR


def new_test_probability(payload: Payload) -> float:
    """A collected test missing from the plan's scores: what the plan's
    scorer gives a test it has never seen on this change, or (a plan stored
    without it) the heuristic's."""
    found = payload.new_test_probability
    return NEW_TEST_PROBABILITY if found is None else found


NOT_SCORED = "Not in this commit's scores"

# Payloads by (database, plan id, scored at): a plan's payload never changes.
# Bounded by tests (about 600 bytes each once decoded).
_PAYLOADS: Lru[tuple[str, int, datetime | None], Payload] = Lru(200_000)
# Statistics read again, by (database, plan id, scored at, statistics version).
_STATS: Lru[tuple[str, int, datetime | None, int], Stats] = Lru(200_000)


def payload_of(session: Session, found: Found) -> Payload:
    """The plan's payload, read once per process and plan."""
    assert found.plan_id is not None
    key = (database_key(session), found.plan_id, found.scored_at)
    cached = _PAYLOADS.get(key)
    if cached is not None:
        return cached
    blob = _read_payload(session, found.plan_id)
    if blob is None:
        raise RuntimeError(f"plan {found.plan_id} has no payload")
    payload = Payload.decode(blob)
    _PAYLOADS.put(key, payload, max(len(payload), 1))
    return payload


def _read_payload(session: Session, plan_id: int) -> bytes | None:
    """The payload's bytes; on PostgreSQL in binary (in text, megabytes of
    hex took most of a first request's time)."""
    driver = session.connection().connection.driver_connection
    if isinstance(driver, psycopg.Connection):
        with driver.cursor(binary=True) as cursor:
            cursor.execute("SELECT payload FROM plans WHERE id = %s", (plan_id,))
            row = cursor.fetchone()
        return None if row is None or row[0] is None else bytes(row[0])
    blob = session.scalar(select(Plan.payload).where(Plan.id == plan_id))
    return None if blob is None else bytes(blob)


@dataclass(frozen=True, eq=False)
class Stats:
    """The statistics the policy reads, in the payload's order: NaN unknown;
    `failed_runs_ago` -1 for no failure among the recent outcomes."""

    duration: npt.NDArray[np.float64]
    builds_since_failure: npt.NDArray[np.float64]
    runs: npt.NDArray[np.int64]
    failed_runs_ago: npt.NDArray[np.int32]
    version: int | None  # the repository's statistics version they are as of
    # The answer's heads with these durations (None: the payload's own).
    heads: np.ndarray | None = None

    @classmethod
    def of_payload(cls, payload: Payload, version: int | None) -> Stats:
        return cls(
            duration=payload.duration,
            builds_since_failure=payload.builds_since_failure,
            runs=payload.runs,
            failed_runs_ago=payload.failed_runs_ago,
            version=version,
        )


# The repository's tests' statistics (the plan's are among them; a test is
# never deleted). On PostgreSQL one row of arrays, in binary: a fifth of the
# client's time of ten thousand rows.
_STATS_ARRAYS = (
    "SELECT array_agg(s.test_id), array_agg(coalesce(s.duration_mean, 'NaN')), "
    "array_agg(coalesce(CAST(s.builds_since_failure AS DOUBLE PRECISION), 'NaN')), "
    "array_agg(coalesce(s.runs, 0)), "
    "array_agg(coalesce(least(nullif(strpos(s.recent, 'F'), 0), "
    "nullif(strpos(s.recent, 'E'), 0)) - 1, -1)) "
    "FROM test_stats s JOIN known_tests t ON t.id = s.test_id "
    "WHERE t.repository_id = %(repository)s"
)
_STATS_ROWS = (
    "SELECT s.test_id, s.duration_mean, s.builds_since_failure, s.runs, s.recent "
    "FROM test_stats s JOIN known_tests t ON t.id = s.test_id WHERE t.repository_id = :repository"
)


# More tests changed since scoring than this: read every test's statistics.
DELTA_LIMIT = 2_000


def current_stats(session: Session, found: Found, payload: Payload, repository_id: int) -> Stats:
    """The statistics as they stand: the payload's while the repository's
    version has not moved since scoring; else the payload's with the tests
    changed since read again; else (too many changed, or the record of a
    version missing) every test's read again. Once per plan and version."""
    version = found.current_stats_version
    if found.stats_version is not None and found.stats_version == version:
        return Stats.of_payload(payload, version)
    assert found.plan_id is not None
    key = (database_key(session), found.plan_id, found.scored_at, version)
    cached = _STATS.get(key)
    if cached is not None:
        return cached
    changed = (
        changed_since(session, repository_id, since=found.stats_version, until=version)
        if found.stats_version is not None
        else None
    )
    if changed is not None and len(changed) <= DELTA_LIMIT:
        stats = _read_changed(session, payload, changed, version)
    else:
        stats = _read_stats(session, payload, repository_id, version)
    _STATS.put(key, stats, max(len(payload), 1))
    return stats


def changed_since(
    session: Session, repository_id: int, *, since: int, until: int
) -> npt.NDArray[np.int64] | None:
    """The tests whose statistics changed after version `since`, up to
    `until`; None when a version between has no record (written before
    records were kept, or pruned)."""
    records = session.scalars(
        select(StatsChange.test_ids).where(
            StatsChange.repository_id == repository_id,
            StatsChange.version > since,
            StatsChange.version <= until,
        )
    ).all()
    if len(records) != until - since:
        return None
    if not records:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate([np.frombuffer(bytes(ids), dtype="<i8") for ids in records]))


def _rows_of(payload: Payload, ids: npt.NDArray[np.int64]) -> tuple[np.ndarray, np.ndarray]:
    """For each of `ids`, whether the payload has that test, and its row."""
    n = len(payload)
    if not len(ids) or not n:
        return np.zeros(len(ids), dtype=bool), np.zeros(0, dtype=np.intp)
    order = np.argsort(payload.test_id, kind="stable")
    sorted_ids = payload.test_id[order]
    at = np.minimum(np.searchsorted(sorted_ids, ids), n - 1)
    known = sorted_ids[at] == ids
    return known, order[at[known]]


_CHANGED_STATS = (
    "SELECT test_id, duration_mean, builds_since_failure, runs, recent "
    "FROM test_stats WHERE test_id = ANY(%s)"
)


def _columns(rows: Sequence[Any]) -> list[Any]:
    """(test id, mean duration, builds since failure, runs, recent) rows as
    the columns `_overwritten` takes (NULL: unknown)."""
    return [
        [r[0] for r in rows],
        [math.nan if r[1] is None else r[1] for r in rows],
        [math.nan if r[2] is None else r[2] for r in rows],
        [r[3] or 0 for r in rows],
        failed_runs_ago([r[4] or "" for r in rows]).tolist(),
    ]


def _overwritten(base: Stats, payload: Payload, columns: Sequence[Any]) -> Stats:
    """`base` (fresh arrays) with the rows of the tests in `columns` (ids,
    durations, builds since failure, runs, failed runs ago) overwritten; the
    payload's other tests are not the plan's. With the answer's heads for
    the durations, unless the payload has no texts (a backtest's)."""
    ids = np.array(columns[0], dtype=np.int64)
    known, at = _rows_of(payload, ids)
    if len(at):
        base.duration[at] = np.array(columns[1], dtype=np.float64)[known]
        base.builds_since_failure[at] = np.array(columns[2], dtype=np.float64)[known]
        base.runs[at] = np.array(columns[3], dtype=np.int64)[known]
        base.failed_runs_ago[at] = np.array(columns[4], dtype=np.int32)[known]
    if not len(payload.head):
        return base
    return replace(base, heads=payload.heads_with(base.duration))


def _read_changed(
    session: Session, payload: Payload, changed: npt.NDArray[np.int64], version: int
) -> Stats:
    """The payload's statistics with those of the `changed` tests read again."""
    stats = Stats(
        duration=payload.duration.copy(),
        builds_since_failure=payload.builds_since_failure.copy(),
        runs=payload.runs.copy(),
        failed_runs_ago=payload.failed_runs_ago.copy(),
        version=version,
    )
    if not len(changed):
        return stats  # heads None: the payload's own
    driver = session.connection().connection.driver_connection
    rows: list[Any]
    if isinstance(driver, psycopg.Connection):
        # One array parameter: an expanding IN of thousands of ids costs
        # more to build and parse than the query takes.
        with driver.cursor(binary=True) as cursor:
            cursor.execute(_CHANGED_STATS, (changed.tolist(),))
            rows = cursor.fetchall()
    else:
        rows = list(
            session.execute(
                select(
                    KnownTestStats.test_id,
                    KnownTestStats.duration_mean,
                    KnownTestStats.builds_since_failure,
                    KnownTestStats.runs,
                    KnownTestStats.recent,
                ).where(KnownTestStats.test_id.in_(changed.tolist()))
            )
        )
    return _overwritten(stats, payload, _columns(rows))


def _read_stats(session: Session, payload: Payload, repository_id: int, version: int) -> Stats:
    """The statistics of the payload's tests as they stand (a test without
    any: unknown), with the answer's heads for their durations."""
    driver = session.connection().connection.driver_connection
    if isinstance(driver, psycopg.Connection):
        with driver.cursor(binary=True) as cursor:
            cursor.execute(_STATS_ARRAYS, {"repository": repository_id})
            row = cursor.fetchone()
        columns: list[Any] = list(row) if row is not None and row[0] is not None else [[]] * 5
    else:
        columns = _columns(session.execute(text(_STATS_ROWS), {"repository": repository_id}).all())
    n = len(payload)
    unknown = Stats(
        duration=np.full(n, math.nan),
        builds_since_failure=np.full(n, math.nan),
        runs=np.zeros(n, dtype=np.int64),
        failed_runs_ago=np.full(n, -1, dtype=np.int32),
        version=version,
    )
    return _overwritten(unknown, payload, columns)


@dataclass(frozen=True, eq=False)
class Items:
    """A plan's tests: its payload and their statistics as of now."""

    payload: Payload
    stats: Stats

    def __len__(self) -> int:
        return len(self.payload)

    def heads(self) -> np.ndarray:
        """Each test's `,{"test":...,"rank":` piece (records.Payload)."""
        return self.stats.heads if self.stats.heads is not None else self.payload.pieces[0]


def load_items(session: Session, *, found: Found, repository_id: int) -> Items:
    payload = payload_of(session, found)
    return Items(payload, current_stats(session, found, payload, repository_id))


class _Names(Sequence[str]):
    """The candidates' names, decoded from the payload only when read (the
    policy reads them only for must-run globs)."""

    def __init__(self, payload: Payload) -> None:
        self._payload = payload

    def __len__(self) -> int:
        return len(self._payload)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._payload.names[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._payload.names)


@dataclass(frozen=True, eq=False)
class Covered:
    """The candidates of the request: each one's payload row (-1: not in
    the plan, new) and, for a collected list, the names as collected."""

    candidates: Candidates
    row: npt.NDArray[np.intp]
    collected: list[str] | None

    @cached_property
    def known(self) -> npt.NDArray[np.bool_]:
        return self.row >= 0


def expanded(tests: Sequence[str], payload: Payload) -> list[str]:
    """The collected ids, each once, with an id that is not a test of the
    plan but a group of them (a file or a class, as a runner that cannot
    list test cases collects: see `Payload.groups`) in place of its tests."""
    collected = list(dict.fromkeys(tests))
    position = payload.position
    if all(name in position for name in collected):
        return collected
    groups, names = payload.groups, payload.names
    result: list[str] = []
    for name in collected:
        rows = groups.get(name) if name not in position else None
        if rows:
            result.extend(names[row] for row in rows)
        else:
            result.append(name)
    return list(dict.fromkeys(result))


def cover(
    items: Items, tests: Sequence[str] | None, recent_runs: int, *, by_model: bool = False
) -> Covered:
    """The plan's tests, or exactly the collected ones (a collected group
    stands for its tests): those the plan lacks are new (riskrank has never
    seen them, or learned of them after scoring). `by_model`: a model scored
    the plan (not the heuristic); where the repository's new tests fail
    more often than the prior, they then run first (`Candidates.new_first`):
    a model learnt from few new tests places one it never saw anywhere,
    the heuristic by the repository's own rate of new tests."""
    payload, stats = items.payload, items.stats
    names: Sequence[str]
    collected: list[str] | None
    if tests is None:
        row = np.arange(len(payload), dtype=np.intp)
        names, collected = _Names(payload), None
    else:
        collected = expanded(tests, payload)
        position = payload.position
        row = np.fromiter(
            (position.get(name, -1) for name in collected), dtype=np.intp, count=len(collected)
        )
        names = collected
    known = row >= 0
    take = np.where(known, row, 0)

    def pick(values: np.ndarray, missing: Any) -> np.ndarray:
        if tests is None:
            return values
        if not len(values):
            return np.full(len(row), missing)
        return np.where(known, values[take], missing)

    failed_ago = pick(stats.failed_runs_ago, -1)
    # The scorer's order: a scored test at its row, one it never saw where
    # it puts such a test (just before that row), all of those in the order
    # collected. A plan stored without that place orders by probability.
    place = (
        None
        if payload.new_test_rank is None
        else np.where(known, row, payload.new_test_rank - 0.5).astype(np.float64)
    )
    candidates = Candidates(
        names=names,
        probability=pick(payload.probability, new_test_probability(payload)),
        duration=pick(stats.duration, math.nan),
        builds_since_failure=pick(stats.builds_since_failure, math.nan),
        recent=(),  # recently_failed stands for it
        is_new=~known | (pick(stats.runs, 0) == 0),
        own_file_changed=known & pick(payload.own_file_changed, False),
        draw=take if tests is not None else row,  # the stored rank - 1
        recently_failed=known & (failed_ago >= 0) & (failed_ago < recent_runs),
        recent_runs=recent_runs,
        place=place,
        new_first=by_model and (payload.new_test_probability or 0.0) > NEW_TEST_PRIOR,
    )
    return Covered(candidates, row, collected)
