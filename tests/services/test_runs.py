"""Reports become history: executions, known tests, statistics, links —
once, on both backends."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.db import Database
from scheduler.ingest.history import read_history
from scheduler.models import (
    ChangedFile,
    Execution,
    FileStatus,
    FileTestLink,
    KnownTest,
    KnownTestStats,
    Outcome,
    Provider,
    Repository,
    RunSource,
    RunStatus,
    SuiteRun,
)
from scheduler.risk.tally import LETTERS, is_failing
from scheduler.services import history, repos, runs

JUNIT = b"""<?xml version="1.0"?>
<testsuite name="pytest" tests="3">
  <testcase classname="tests.test_io.TestReader" file="tests/test_io.py" name="test_eof" time="0.5">
    <failure message="EOFError">boom</failure>
  </testcase>
  <testcase classname="tests.test_io" file="tests/test_io.py" name="test_open" time="0.1"/>
  <testcase classname="tests.test_io" file="tests/test_io.py" name="test_later" time="0">
    <skipped message="not today"/>
  </testcase>
</testsuite>"""


@pytest.fixture
def repository(database: Database) -> int:
    with database.session() as session:
        return repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/app").id


def post(
    database: Database,
    repository_id: int,
    report: bytes | dict[str, Any],
    *,
    commit: str = "c1",
    run_key: str | None = None,
) -> int:
    """Store a report as the API does, then ingest it as the worker does."""
    if isinstance(report, dict):
        data, source = json.dumps(report).encode(), RunSource.JSON
    else:
        data, source = report, RunSource.JUNIT
    with database.session() as session:
        stored = runs.store_run(
            session,
            repository=session.get_one(Repository, repository_id),
            commit_sha=commit,
            branch="main",
            run_key=run_key,
            plan_id=None,
            source=source,
            content_type="application/json" if source is RunSource.JSON else "application/xml",
            report=data,
        )
    with database.session() as session:
        assert runs.ingest_run(session, stored.id) is RunStatus.INGESTED
    return stored.id


def results(*rows: tuple[str, str] | tuple[str, str, int]) -> dict[str, Any]:
    return {
        "results": [
            {"test": row[0], "outcome": row[1], "attempt": row[2] if len(row) > 2 else 1}
            for row in rows
        ]
    }


def stats(database: Database) -> dict[str, dict[str, Any]]:
    with database.session() as session:
        rows = session.execute(
            select(KnownTest.name, KnownTestStats).join(
                KnownTestStats, KnownTestStats.test_id == KnownTest.id
            )
        )
        return {
            name: {
                "runs": s.runs,
                "failures": s.failures,
                "recent": s.recent,
                "flips": s.flips,
                "flaky_runs": s.flaky_runs,
                "since": s.builds_since_failure,
            }
            for name, s in rows
        }


def count(database: Database, model: type[Any]) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_junit_report_becomes_history(database: Database, repository: int) -> None:
    run_id = post(database, repository, JUNIT)
    with database.session() as session:
        tests = dict(
            (name, file) for name, file in session.execute(select(KnownTest.name, KnownTest.file))
        )
        run = session.get_one(SuiteRun, run_id)
        assert run.ingested_at is not None
        assert run.attempts == 1
    assert tests == {
        "tests/test_io.py::TestReader::test_eof": "tests/test_io.py",
        "tests/test_io.py::test_open": "tests/test_io.py",
        "tests/test_io.py::test_later": "tests/test_io.py",
    }
    assert count(database, Execution) == 3
    # The skipped test is known, but a skip says nothing of its health.
    assert stats(database) == {
        "tests/test_io.py::TestReader::test_eof": {
            "runs": 1,
            "failures": 1,
            "recent": "F",
            "flips": 0,
            "flaky_runs": 0,
            "since": 0,
        },
        "tests/test_io.py::test_open": {
            "runs": 1,
            "failures": 0,
            "recent": "P",
            "flips": 0,
            "flaky_runs": 0,
            "since": None,
        },
    }


def test_the_same_report_twice_changes_nothing(database: Database, repository: int) -> None:
    first = post(database, repository, JUNIT)
    before = stats(database)
    with database.session() as session:
        again = runs.store_run(
            session,
            repository=session.get_one(Repository, repository),
            commit_sha="c1",
            branch="main",
            run_key=None,
            plan_id=None,
            source=RunSource.JUNIT,
            content_type="application/xml",
            report=JUNIT,
        )
    assert (again.id, again.created) == (first, False)
    # A redelivered task finds the run ingested and leaves it.
    with database.session() as session:
        assert runs.ingest_run(session, first) is RunStatus.INGESTED
    assert stats(database) == before
    assert count(database, Execution) == 3
    assert count(database, SuiteRun) == 1


def test_failed_then_passed_in_one_report_is_flaky(database: Database, repository: int) -> None:
    post(database, repository, results(("t", "failed", 1), ("t", "passed", 2), ("u", "passed")))
    with database.session() as session:
        flags = set(session.execute(select(Execution.attempt, Execution.flaky)))
    assert flags == {(1, True), (2, True), (1, False)}
    assert stats(database)["t"] == {
        "runs": 1,
        "failures": 0,
        "recent": "P",
        "flips": 0,
        "flaky_runs": 1,
        "since": None,
    }


def test_a_retried_job_on_the_same_commit_marks_both_reports_flaky(
    database: Database, repository: int
) -> None:
    post(database, repository, results(("t", "failed"), ("u", "passed")), run_key="job-1")
    post(database, repository, results(("t", "passed"), ("u", "passed")), run_key="job-2")
    with database.session() as session:
        flaky = list(
            session.execute(
                select(KnownTest.name, Execution.flaky)
                .join(KnownTest, KnownTest.id == Execution.test_id)
                .order_by(Execution.id)
            )
        )
    assert flaky == [("t", True), ("u", False), ("t", True), ("u", False)]


def test_shards_sharing_a_run_key_are_one_build(database: Database, repository: int) -> None:
    post(database, repository, results(("a", "passed"), ("m", "passed")), run_key="b1")
    post(database, repository, results(("b", "failed"), ("m", "failed")), run_key="b1")
    post(database, repository, results(("a", "passed"), ("m", "passed")), commit="c2")
    got = stats(database)
    assert got["m"] == {
        "runs": 2,
        "failures": 1,
        "recent": "PF",
        "flips": 1,
        "flaky_runs": 0,
        "since": 1,
    }
    assert got["a"]["runs"] == 2
    assert got["b"]["runs"] == 1


def test_links_count_changed_files_with_each_test(database: Database, repository: int) -> None:
    with database.session() as session:
        commit_id = runs.ensure_commit(
            session, repository=session.get_one(Repository, repository), sha="c1"
        )
        for path in ("src/io.py", "README.md"):
            session.add(ChangedFile(commit_id=commit_id, path=path, status=FileStatus.MODIFIED))
    post(database, repository, results(("t", "failed"), ("u", "passed"), ("s", "skipped")))
    post(database, repository, results(("t", "passed")), run_key="again")
    with database.session() as session:
        links = set(
            session.execute(
                select(
                    FileTestLink.path,
                    KnownTest.name,
                    FileTestLink.changed_together,
                    FileTestLink.failed_together,
                ).join(KnownTest, KnownTest.id == FileTestLink.test_id)
            )
        )
    assert links == {
        ("src/io.py", "t", 2, 1),
        ("README.md", "t", 2, 1),
        ("src/io.py", "u", 1, 0),
        ("README.md", "u", 1, 0),
    }


def test_unreadable_stored_report_fails_the_run_with_the_reason(
    database: Database, repository: int
) -> None:
    with database.session() as session:
        stored = runs.store_run(
            session,
            repository=session.get_one(Repository, repository),
            commit_sha="c1",
            branch=None,
            run_key=None,
            plan_id=None,
            source=RunSource.JUNIT,
            content_type="application/xml",
            report=b"<html>no</html>",
        )
    with database.session() as session:
        assert runs.ingest_run(session, stored.id) is RunStatus.FAILED
        run = session.get_one(SuiteRun, stored.id)
        assert run.error is not None
        assert "not JUnit XML" in run.error
    assert count(database, Execution) == 0


# --- incremental statistics equal a recomputation from the executions -------


def recompute(
    database: Database,
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], tuple[int, int]]]:
    """Statistics and links recomputed from scratch, the plain way: every
    build of every test, in order, from the executions table."""
    with database.session() as session:
        rows = session.execute(
            select(
                KnownTest.name,
                SuiteRun.id,
                SuiteRun.commit_id,
                SuiteRun.run_key,
                Execution.attempt,
                Execution.outcome,
                Execution.flaky,
            )
            .join(SuiteRun, SuiteRun.id == Execution.run_id)
            .join(KnownTest, KnownTest.id == Execution.test_id)
            .order_by(SuiteRun.id, Execution.attempt)
        ).all()
        changed: dict[int, list[str]] = defaultdict(list)
        for commit_id, path in session.execute(select(ChangedFile.commit_id, ChangedFile.path)):
            changed[commit_id].append(path)
    # Final attempt per test and run, then worst per test and build.
    final: dict[tuple[str, int], tuple[Outcome, bool, int, str]] = {}
    for name, run_id, commit_id, run_key, _attempt, outcome, flaky in rows:
        final[(name, run_id)] = (outcome, flaky, commit_id, f"{commit_id}/{run_key or run_id}")
    builds: dict[str, list[tuple[str, bool, bool, int]]] = defaultdict(list)
    order: dict[str, list[str]] = defaultdict(list)
    for (name, _run_id), (outcome, flaky, commit_id, build) in final.items():
        if outcome is Outcome.SKIPPED:
            continue
        if build not in order[name]:
            order[name].append(build)
        builds[f"{name}@{build}"].append((LETTERS[outcome], flaky, True, commit_id))
    expected: dict[str, dict[str, Any]] = {}
    links: dict[tuple[str, str], tuple[int, int]] = defaultdict(lambda: (0, 0))
    for name, its_builds in order.items():
        letters = []
        flaky_runs = 0
        for build in its_builds:
            seen = builds[f"{name}@{build}"]
            letter = max((s[0] for s in seen), key=is_failing)
            letters.append(letter)
            flaky_runs += sum(1 for s in seen if s[1])
            for path in changed[seen[0][3]]:
                ran, failed = links[(path, name)]
                links[(path, name)] = (ran + 1, failed + int(is_failing(letter)))
        failing = [i for i, letter in enumerate(letters) if is_failing(letter)]
        expected[name] = {
            "runs": len(letters),
            "failures": len(failing),
            "recent": "".join(reversed(letters))[:64],
            "flips": sum(is_failing(a) != is_failing(b) for a, b in itertools.pairwise(letters)),
            "flaky_runs": flaky_runs,
            "since": len(letters) - 1 - failing[-1] if failing else None,
        }
    return expected, dict(links)


def stored_links(database: Database) -> dict[tuple[str, str], tuple[int, int]]:
    with database.session() as session:
        return {
            (path, name): (ran, failed)
            for path, name, ran, failed in session.execute(
                select(
                    FileTestLink.path,
                    KnownTest.name,
                    FileTestLink.changed_together,
                    FileTestLink.failed_together,
                ).join(KnownTest, KnownTest.id == FileTestLink.test_id)
            )
        }


@pytest.mark.parametrize(
    ("dataset", "builds"),
    [
        ("dune-common/dune-total/features-engineered.csv.gz", 150),
        ("apache-commons/commons-io.jsonl.gz", 250),
    ],
)
def test_imported_statistics_equal_a_recomputation(
    database: Database, repository: int, shared_dir: Path, dataset: str, builds: int
) -> None:
    reports = list(itertools.islice(read_history(shared_dir / "datasets" / dataset), builds))
    # Small batches, so the statistics cross many flushes.
    history.import_history(database, repository_id=repository, reports=reports, batch=7)
    expected, links = recompute(database)
    assert stats(database) == expected
    assert stored_links(database) == links
    assert sum(ran for ran, _ in links.values()) > 0 or "dune" in dataset
