"""Point in time: replayed features use only earlier builds, equal what
scoring serves, and do not change when later builds arrive."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from scheduler.db import Database
from scheduler.ingest import hunks
from scheduler.ingest.history import HistoryReport, read_history
from scheduler.models import ChangedFile, Provider, Repository
from scheduler.risk import replay
from scheduler.risk.features import FeatureMatrix
from scheduler.risk.links import Link
from scheduler.services import history, repos, runs, scoring
from scheduler.services.builds import load_builds
from tests.conftest import stored_links

# The symbols of the mutation history's first 41 builds' hunks, by build.
SYMBOLS_IN_THE_FIRST_41 = 79
NAMED_AFTER_CALLBACK_ITER = [
    f"tests/test_more.py::CallbackIterTests::test_{name}"
    for name in (
        "abort",
        "basic",
        "callback_kwd",
        "exception",
        "no_result",
        "partial_consumption",
    )
]


@pytest.fixture
def commons(shared_dir: Path) -> list[HistoryReport]:
    path = shared_dir / "datasets" / "apache-commons" / "commons-codec.jsonl.gz"
    return list(itertools.islice(read_history(path), 160))


def imported(database: Database, reports: list[HistoryReport]) -> int:
    with database.session() as session:
        repository_id = repos.add_repository(
            session, provider=Provider.GENERIC, full_name="apache/commons-codec"
        ).id
    history.import_history(database, repository_id=repository_id, reports=reports, batch=25)
    return repository_id


def replayed(database: Database, repository_id: int) -> list[replay.BuildRows]:
    with database.session() as session:
        return list(replay.replay(load_builds(session, repository_id=repository_id)))


def model_inputs(matrix: FeatureMatrix) -> np.ndarray:
    """Every column but new_test_rate, which is read from the tests scored:
    serving scores the repository's active tests, replay a build's. Models
    do not read it (EXCLUDED_FEATURES); the heuristic's use of it is tested
    in tests/risk/test_heuristic.py."""
    keep = [number for number, name in enumerate(matrix.names) if name != "new_test_rate"]
    return matrix.values[:, keep]


def test_features_of_a_build_do_not_change_when_later_builds_arrive(
    database: Database, commons: list[HistoryReport]
) -> None:
    repository_id = imported(database, commons[:100])
    before = {rows.build.key: rows for rows in replayed(database, repository_id)}
    history.import_history(database, repository_id=repository_id, reports=commons[100:], batch=25)
    after = {rows.build.key: rows for rows in replayed(database, repository_id)}
    assert len(after) > len(before)
    for key, rows in before.items():
        assert after[key].tests == rows.tests
        assert np.array_equal(after[key].matrix.values, rows.matrix.values, equal_nan=True)
        assert np.array_equal(after[key].failed, rows.failed)


def test_replayed_features_are_the_ones_scoring_serves(
    database: Database, commons: list[HistoryReport]
) -> None:
    """Score a new commit with the live code, then replay the same commit as
    the next build: the feature vectors of its tests are equal."""
    known, following = commons[:120], commons[120]
    repository_id = imported(database, known)
    with database.session() as session:
        repository = session.get_one(Repository, repository_id)
        commit_id = runs.ensure_commit(session, repository=repository, sha=following.commit)
        for change in following.changed_files:
            session.add(ChangedFile(commit_id=commit_id, path=change.path, status=change.status))
    assert following.time is not None
    with database.session() as session:
        served = scoring.score_tests(
            session,
            repository_id=repository_id,
            commit_id=commit_id,
            at=following.time,
            cache=scoring.ModelCache(),
        )
    history.import_history(database, repository_id=repository_id, reports=[following])
    last = replayed(database, repository_id)[-1]
    assert last.build.at == following.time
    row_of = {name: row for row, name in enumerate(served.matrix.tests)}
    for row, name in enumerate(last.tests):
        assert np.array_equal(
            model_inputs(served.matrix)[row_of[name]],
            model_inputs(last.matrix)[row],
            equal_nan=True,
        ), name


def test_replay_knows_the_changed_lines_that_scoring_serves(
    database: Database, shared_dir: Path
) -> None:
    """The same parity with line counts and hunks in the history (the
    mutation history has them): `changed_lines` is the change's added plus
    removed lines, and the symbol features read the symbols its hunks name,
    when served, when replayed from the database for training, and when
    replayed from the file for a backtest."""
    path = shared_dir / "datasets" / "mutation" / "more-itertools.jsonl.gz"
    if not path.exists():
        pytest.skip(f"the mutation history is not at {path}")
    reports = list(itertools.islice(read_history(path), 41))
    known, following = reports[:40], reports[40]
    lines = sum(change.lines or 0 for change in following.changed_files)
    assert lines > 0
    repository_id = imported(database, known)
    with database.session() as session:
        repository = session.get_one(Repository, repository_id)
        commit_id = runs.ensure_commit(session, repository=repository, sha=following.commit)
        for change in following.changed_files:
            session.add(
                ChangedFile(
                    commit_id=commit_id,
                    path=change.path,
                    status=change.status,
                    additions=change.additions,
                    deletions=change.deletions,
                    hunks=hunks.to_json(change.hunks),
                )
            )
    assert following.time is not None
    with database.session() as session:
        served = scoring.score_tests(
            session,
            repository_id=repository_id,
            commit_id=commit_id,
            at=following.time,
            cache=scoring.ModelCache(),
        )
    assert set(served.matrix.column("changed_lines").tolist()) == {lines}
    # callback_iter.__init__ and callback_iter.result changed: the tests
    # of CallbackIterTests are named after it.
    named = served.matrix.column("symbol_named")
    assert (
        sorted(
            name for name, value in zip(served.matrix.tests, named.tolist(), strict=True) if value
        )
        == NAMED_AFTER_CALLBACK_ITER
    )
    # {callback, iter, result} and test_no_result's {callback, iter, no, result}.
    assert served.matrix.column("symbol_tokens").max() == 0.75
    history.import_history(database, repository_id=repository_id, reports=[following])
    from_database = replayed(database, repository_id)[-1]
    from_file = list(replay.replay(replay.builds_from_reports(reports)))[-1]
    row_of = {name: row for row, name in enumerate(served.matrix.tests)}
    for last in (from_database, from_file):
        assert last.build.at == following.time
        assert set(last.matrix.column("changed_lines").tolist()) == {lines}
        assert len(last.tests) == 696
        for row, name in enumerate(last.tests):
            assert np.array_equal(
                model_inputs(served.matrix)[row_of[name]],
                model_inputs(last.matrix)[row],
                equal_nan=True,
            ), name
    # Every earlier build replays with its own line counts too.
    with database.session() as session:
        stored = load_builds(session, repository_id=repository_id)
    assert [b.changed_lines for b in stored] == [
        sum(change.lines or 0 for change in report.changed_files) for report in reports
    ]
    # And with the symbols of its hunks, the same from the file.
    assert [b.symbols for b in stored] == [b.symbols for b in replay.builds_from_reports(reports)]
    assert sum(len(b.symbols) for b in stored) == SYMBOLS_IN_THE_FIRST_41


@pytest.mark.parametrize(
    ("dataset", "count"),
    [
        ("apache-commons/commons-io.jsonl.gz", 200),
        ("dune-common/dune-total/features-engineered.csv.gz", 150),
    ],
)
def test_a_history_replays_in_memory_as_it_does_once_imported(
    database: Database, shared_dir: Path, dataset: str, count: int
) -> None:
    """`builds_from_reports` (backtests, benchmarks) gives the builds that
    `load_builds` reads back after an import (training), so both replay to
    the same rows."""
    reports = list(itertools.islice(read_history(shared_dir / "datasets" / dataset), count))
    repository_id = imported(database, reports)
    with database.session() as session:
        stored = load_builds(session, repository_id=repository_id)
    in_memory = replay.builds_from_reports(reports)
    assert len(in_memory) == len(stored) > 0
    for mine, theirs in zip(in_memory, stored, strict=True):
        assert mine.at == theirs.at
        assert mine.paths == theirs.paths
        assert mine.outcomes == theirs.outcomes
        assert mine.durations == theirs.durations
        assert mine.flaky == theirs.flaky
        assert mine.files == theirs.files
    x_mine, y_mine, b_mine = replay.training_rows(in_memory)
    x_theirs, y_theirs, b_theirs = replay.training_rows(stored)
    assert np.array_equal(x_mine, x_theirs, equal_nan=True)
    assert np.array_equal(y_mine, y_theirs)
    assert np.array_equal(b_mine, b_theirs)


def test_replayed_links_are_the_ones_ingestion_stores(database: Database, shared_dir: Path) -> None:
    """Links counted on status changes and decayed, live (imported in
    batches, flushed between) and replayed from the stored builds: the same
    numbers, valued at the same builds, and the same count of builds. Commons
    Compress's first 150 builds have tests that stay red for some builds."""
    path = shared_dir / "datasets" / "apache-commons" / "commons-compress.jsonl.gz"
    repository_id = imported(database, list(itertools.islice(read_history(path), 150)))
    with database.session() as session:
        builds = load_builds(session, repository_id=repository_id)
        stored = {
            key: Link(*values) for key, values in stored_links(session, repository_id).items()
        }
        build_count = session.get_one(Repository, repository_id).build_count
    replayer = replay.Replayer()
    for build in builds:
        replayer.fold(build)
    replayed_links = {
        (path, name): link for path, tests in replayer.links.items() for name, link in tests.items()
    }
    assert build_count == replayer.builds == len(builds)
    assert replayed_links == stored
    # Status changes, not failing builds: tests stayed red for some builds.
    counts = replay.count_history(builds)
    assert 0 < counts.status_changes < counts.failures
    assert any(link.failed_together > 0 for link in stored.values())
    assert any(0 < link.valued_at < build_count for link in stored.values())


def test_selection_weights_are_capped_inverse_propensities_that_keep_the_total() -> None:
    from datetime import UTC, datetime

    from scheduler.outcomes import Outcome

    at = datetime(2026, 1, 1, tzinfo=UTC)
    drawn = replay.Build(
        key="1/a",
        at=at,
        paths=(),
        outcomes={name: Outcome.PASSED for name in ("c", "a", "b")},
        selection={"a": 0.01, "b": 0.5, "gone": 0.1},  # "gone" did not run: no row
    )
    empty = replay.Build(key="2/a", at=at, paths=())  # no outcome: no row
    plain = replay.Build(key="3/a", at=at, paths=(), outcomes={"a": Outcome.FAILED})
    weights = replay.selection_weights([drawn, empty, plain])
    # Rows by name within a build (training_rows' order): a at 1/0.01 capped
    # to 20, b at 2, c and the last build's a once; 24 spread over 4 rows.
    raw = np.array([replay.MAX_SELECTION_WEIGHT, 2.0, 1.0, 1.0])
    np.testing.assert_allclose(weights, raw * 4 / raw.sum())
    assert weights.size == replay.training_rows([drawn, empty, plain])[1].size
    assert replay.selection_weights([]).size == 0
