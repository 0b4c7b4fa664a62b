"""The feature inputs read from the database: PostgreSQL's fast reads give
exactly what the portable SQLAlchemy reads give."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from scheduler.db import Database
from scheduler.models import (
    ChangedFile,
    FileStatus,
    FileTestLink,
    KnownTest,
    KnownTestStats,
    Provider,
)
from scheduler.risk.columns import ChangeColumns, HistoryColumns, LinkColumns
from scheduler.risk.links import HALF_LIFE_BUILDS
from scheduler.services import feature_inputs, repos, runs
from tests.conftest import empty_all_tables

T0 = datetime(2024, 3, 1, 12, 0, 0, 123_457, tzinfo=UTC)
CHANGED = ("src/io/Reader.java", "src/io/Writer.java", "docs/index.md")


@pytest.fixture
def postgres(postgres_url: str) -> Iterator[Database]:
    database = Database.from_url(postgres_url)
    empty_all_tables(database)
    yield database
    database.dispose()


def filled(database: Database) -> tuple[int, int]:
    """A repository with tests of every kind (statistics full, partial and
    missing, one inactive), links on changed and unchanged paths, and a
    second repository whose links must not be read."""
    with database.session() as session:
        repository = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/io")
        repository.build_count = BUILDS
        other = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/other")
        commit_id = runs.ensure_commit(session, repository=repository, sha="a" * 40)
        for path in CHANGED:
            session.add(ChangedFile(commit_id=commit_id, path=path, status=FileStatus.MODIFIED))
        tests = [
            KnownTest(
                repository_id=repository.id,
                name=f"org.io.ReaderTest::test{number}",
                file=None if number % 3 else f"src/test/java/org/io/ReaderTest{number}.java",
                first_seen_at=T0 - timedelta(days=number, microseconds=number * 7),
                is_active=number != 4,
            )
            for number in range(8)
        ]
        foreign = KnownTest(repository_id=other.id, name="x::y", first_seen_at=T0)
        session.add_all([*tests, foreign])
        session.flush()
        for number, test in enumerate(tests[:6]):
            session.add(
                KnownTestStats(
                    test_id=test.id,
                    runs=10 + number,
                    failures=number,
                    recent="PFPE"[: number % 4] + "P" * number * 10,
                    builds_since_failure=None if number % 2 else number,
                    flips=number,
                    flaky_runs=number // 2,
                    duration_mean=None if number == 3 else 0.1 * number + 1e-9,
                )
            )
        for number, test in enumerate(tests):
            for path in (*CHANGED[number % 2 :], "src/unchanged.c"):
                session.add(
                    FileTestLink(
                        repository_id=repository.id,
                        path=path,
                        test_id=test.id,
                        changed_together=number + len(path) + 0.25,
                        failed_together=number % 3,
                        valued_at=VALUED_AT * number,
                    )
                )
        session.add(
            FileTestLink(
                repository_id=other.id,
                path=CHANGED[0],
                test_id=foreign.id,
                changed_together=1,
                failed_together=1,
            )
        )
        return repository.id, commit_id


# The repository's builds, and how much older each test's links are valued at.
BUILDS, VALUED_AT = 500, 60


def same_history(left: HistoryColumns, right: HistoryColumns) -> None:
    for field in fields(HistoryColumns):
        a, b = getattr(left, field.name), getattr(right, field.name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype, field.name
            assert np.array_equal(a, b, equal_nan=True), field.name
        else:
            assert tuple(a) == tuple(b), field.name


def link_set(links: LinkColumns) -> list[tuple[int, int, float, float]]:
    return sorted(
        zip(
            links.test_index.tolist(),
            links.path_index.tolist(),
            links.changed_together.tolist(),
            links.failed_together.tolist(),
            strict=True,
        )
    )


def test_fast_reads_equal_the_portable_ones(postgres: Database) -> None:
    repository_id, commit_id = filled(postgres)
    with postgres.session() as session:
        ids, history = feature_inputs.load_history(session, repository_id=repository_id)
        portable_ids, portable = feature_inputs.load_history(
            session, repository_id=repository_id, portable=True
        )
        change = feature_inputs.load_change(session, commit_id=commit_id)
        links = feature_inputs.load_links(
            session, repository_id=repository_id, test_ids=ids, change=change
        )
        portable_links = feature_inputs.load_links(
            session, repository_id=repository_id, test_ids=ids, change=change, portable=True
        )
        # Candidates in another order, some missing: rows follow test_ids.
        some = ids[::-2]
        some_links = feature_inputs.load_links(
            session, repository_id=repository_id, test_ids=some, change=change
        )
        some_portable = feature_inputs.load_links(
            session, repository_id=repository_id, test_ids=some, change=change, portable=True
        )
    assert ids == portable_ids
    assert len(ids) == 7  # the inactive test is not a candidate
    same_history(history, portable)
    assert history.first_seen[0] == T0.timestamp()
    assert link_set(links) == link_set(portable_links)
    assert len(links) == 7 * 2 + 3  # changed paths only, this repository only
    # Decayed to the repository's newest build: test n's links by
    # 0.5 ** ((500 - 60 n) / 200).
    number_of = {row: int(name.rpartition("test")[2]) for row, name in enumerate(history.names)}
    expected = []
    for row, number in number_of.items():
        factor = 0.5 ** ((BUILDS - VALUED_AT * number) / HALF_LIFE_BUILDS)
        for path in CHANGED[number % 2 :]:
            ran, failed = number + len(path) + 0.25, number % 3
            expected.append((row, change.paths.index(path), ran * factor, failed * factor))
    assert link_set(links) == sorted(expected)
    assert link_set(some_links) == link_set(some_portable)
    assert len(some_links) > 0


def test_fast_reads_of_nothing(postgres: Database) -> None:
    with postgres.session() as session:
        repository_id = repos.add_repository(
            session, provider=Provider.GITHUB, full_name="acme/empty"
        ).id
        ids, history = feature_inputs.load_history(session, repository_id=repository_id)
        assert ids == []
        same_history(
            history,
            feature_inputs.load_history(session, repository_id=repository_id, portable=True)[1],
        )
        change = ChangeColumns.of(["a.py"])
        assert (
            len(feature_inputs.load_links(session, repository_id=1, test_ids=[5], change=change))
            == 0
        )
