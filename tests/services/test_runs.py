"""Reports become history: executions, known tests, statistics, links —
once, on both backends."""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, TypeAlias

import pytest
from sqlalchemy import func, select

from scheduler.db import Database
from scheduler.ingest.history import read_history
from scheduler.models import (
    ChangedFile,
    Execution,
    FileStatus,
    KnownTest,
    KnownTestStats,
    Outcome,
    Provider,
    Repository,
    RunSource,
    RunStatus,
    SuiteRun,
)
from scheduler.risk.links import HALF_LIFE_BUILDS
from scheduler.risk.tally import LETTERS, is_failing
from scheduler.services import history, repos, runs
from tests.conftest import empty_all_tables, stored_links

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
    # t ran in builds 1 and 2 and started failing in 1, valued at build 2.
    once = 0.5 ** (1 / HALF_LIFE_BUILDS)
    assert links_of(database) == {
        ("src/io.py", "t"): (once + 1.0, once, 2),
        ("README.md", "t"): (once + 1.0, once, 2),
        ("src/io.py", "u"): (1.0, 0.0, 1),
        ("README.md", "u"): (1.0, 0.0, 1),
    }
    with database.session() as session:
        repository_row = session.get_one(Repository, repository)
        assert (repository_row.build_count, repository_row.last_build) == (2, f"{commit_id}/again")


def test_a_test_that_stays_red_fails_together_with_the_change_that_broke_it(
    database: Database, repository: int
) -> None:
    """Live: t breaks in c2 and stays red through c3 and c4; only c2's
    path failed together with it. Shards of one build are one build."""
    with database.session() as session:
        repository_row = session.get_one(Repository, repository)
        for sha in ("c1", "c2", "c3", "c4"):
            commit_id = runs.ensure_commit(session, repository=repository_row, sha=sha)
            session.add(
                ChangedFile(commit_id=commit_id, path=f"{sha}.py", status=FileStatus.MODIFIED)
            )
    post(database, repository, results(("t", "passed")), commit="c1", run_key="b")
    post(database, repository, results(("t", "passed")), commit="c2", run_key="b")
    post(database, repository, results(("t", "failed")), commit="c2", run_key="b")  # a shard
    post(database, repository, results(("t", "failed")), commit="c3", run_key="b")
    post(database, repository, results(("t", "error")), commit="c4", run_key="b")
    links = links_of(database)
    assert links == {
        ("c1.py", "t"): (1.0, 0.0, 1),
        ("c2.py", "t"): (1.0, 1.0, 2),
        ("c3.py", "t"): (1.0, 0.0, 3),
        ("c4.py", "t"): (1.0, 0.0, 4),
    }


def store(database: Database, repository_id: int, report: dict[str, Any], commit: str) -> int:
    with database.session() as session:
        return runs.store_run(
            session,
            repository=session.get_one(Repository, repository_id),
            commit_sha=commit,
            branch="main",
            run_key=None,
            plan_id=None,
            source=RunSource.JSON,
            content_type="application/json",
            report=json.dumps(report).encode(),
        ).id


def step(database: Database, ingestion: runs.RunIngestion) -> RunStatus | None:
    with database.session() as session:
        return ingestion.step(session)


def everything(database: Database) -> tuple[Any, ...]:
    with database.session() as session:
        executions = sorted(
            session.execute(
                select(KnownTest.name, Execution.attempt, Execution.outcome, Execution.flaky).join(
                    KnownTest, KnownTest.id == Execution.test_id
                )
            )
        )
        build_count = session.scalar(select(Repository.build_count))
    return stats(database), executions, build_count


# Seven tests, one with two attempts (they stay in one step), one flaky.
STEPPED = results(
    ("a", "passed"),
    ("b", "failed", 1),
    ("c", "passed"),
    ("b", "passed", 2),
    ("d", "failed"),
    ("e", "passed"),
    ("f", "error"),
    ("g", "skipped"),
)


def test_a_report_in_steps_is_the_report_at_once(database: Database, repository: int) -> None:
    post(database, repository, STEPPED)
    whole = everything(database)
    empty_all_tables(database)
    with database.session() as session:
        fresh = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/app").id
    run_id = store(database, fresh, STEPPED, "c1")
    ingestion = runs.RunIngestion(run_id, step_tests=2)
    statuses = []
    while (status := step(database, ingestion)) is RunStatus.PENDING:
        statuses.append(status)
    assert status is RunStatus.INGESTED
    # One step reads the report (parsed outside a transaction), four fold it.
    assert len(statuses) == 4
    assert everything(database) == whole
    with database.session() as session:
        assert session.get_one(SuiteRun, run_id).ingested_tests == 7


def test_a_redelivery_after_a_kill_half_way_counts_each_result_once(
    database: Database, repository: int
) -> None:
    post(database, repository, STEPPED)
    whole = everything(database)
    empty_all_tables(database)
    with database.session() as session:
        fresh = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/app").id
    run_id = store(database, fresh, STEPPED, "c1")
    killed = runs.RunIngestion(run_id, step_tests=3)
    assert step(database, killed) is RunStatus.PENDING  # read the report
    assert step(database, killed) is RunStatus.PENDING  # a, b, c folded in
    with database.session() as session:
        assert session.get_one(SuiteRun, run_id).ingested_tests == 3

    # A step whose transaction is rolled back (killed before its commit)
    # leaves nothing behind.
    def killed_before_the_commit() -> None:
        with database.session() as session:
            killed.step(session)
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        killed_before_the_commit()
    redelivered = runs.RunIngestion(run_id, step_tests=3)
    while (status := step(database, redelivered)) is RunStatus.PENDING:
        pass
    assert status is RunStatus.INGESTED
    assert everything(database) == whole
    assert count(database, Execution) == 8


def test_another_report_waits_for_a_half_way_one_and_finishes_it_when_stalled(
    database: Database, repository: int
) -> None:
    first = store(database, repository, STEPPED, "c1")
    second = store(database, repository, results(("a", "failed"), ("z", "passed")), "c2")
    stopped = runs.RunIngestion(first, step_tests=4)
    step(database, stopped)
    assert step(database, stopped) is RunStatus.PENDING  # a, b, c, d of seven
    waiting = runs.RunIngestion(second, wait_seconds=0.01, stalled_seconds=0.3)
    assert step(database, waiting) is RunStatus.PENDING  # the first is half-way
    with database.session() as session:
        assert session.get_one(SuiteRun, second).attempts == 0
    while (status := step(database, waiting)) is RunStatus.PENDING:
        pass
    assert status is RunStatus.INGESTED
    with database.session() as session:
        assert session.get_one(SuiteRun, first).status is RunStatus.INGESTED
        assert session.scalar(select(Repository.build_count)) == 2
    # In order: the first report's outcome of "a", then the second's.
    assert stats(database)["a"]["recent"] == "FP"
    assert count(database, Execution) == 10


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


Links: TypeAlias = dict[tuple[str, str], tuple[float, float, int]]


def recompute(database: Database) -> tuple[dict[str, dict[str, Any]], Links]:
    """Statistics and links recomputed from scratch, the plain way: every
    build of every test, in order, from the executions table. A link is
    (ran together, started failing together, the build it is valued at),
    each build weighing 0.5 ** (builds since / HALF_LIFE_BUILDS)."""
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
    number: dict[str, int] = {}  # the repository's builds, numbered from 1
    for name, run_id, commit_id, run_key, _attempt, outcome, flaky in rows:
        final[(name, run_id)] = (outcome, flaky, commit_id, f"{commit_id}/{run_key or run_id}")
        number.setdefault(f"{commit_id}/{run_key or run_id}", len(number) + 1)
    builds: dict[str, list[tuple[str, bool, bool, int]]] = defaultdict(list)
    order: dict[str, list[str]] = defaultdict(list)
    for (name, _run_id), (outcome, flaky, commit_id, build) in final.items():
        if outcome is Outcome.SKIPPED:
            continue
        if build not in order[name]:
            order[name].append(build)
        builds[f"{name}@{build}"].append((LETTERS[outcome], flaky, True, commit_id))
    expected: dict[str, dict[str, Any]] = {}
    together: dict[tuple[str, str], list[tuple[int, bool]]] = defaultdict(list)
    for name, its_builds in order.items():
        letters: list[str] = []
        flaky_runs = 0
        for build in its_builds:
            seen = builds[f"{name}@{build}"]
            letter = max((s[0] for s in seen), key=is_failing)
            change = is_failing(letter) and not (letters and is_failing(letters[-1]))
            letters.append(letter)
            flaky_runs += sum(1 for s in seen if s[1])
            for path in changed[seen[0][3]]:
                together[(path, name)].append((number[build], change))
        failing = [i for i, letter in enumerate(letters) if is_failing(letter)]
        expected[name] = {
            "runs": len(letters),
            "failures": len(failing),
            "recent": "".join(reversed(letters))[:64],
            "flips": sum(is_failing(a) != is_failing(b) for a, b in itertools.pairwise(letters)),
            "flaky_runs": flaky_runs,
            "since": len(letters) - 1 - failing[-1] if failing else None,
        }
    links: Links = {}
    for key, seen_together in together.items():
        last = seen_together[-1][0]
        weights = [
            (0.5 ** ((last - at) / HALF_LIFE_BUILDS), change) for at, change in seen_together
        ]
        links[key] = (
            math.fsum(weight for weight, _ in weights),
            math.fsum(weight for weight, change in weights if change),
            last,
        )
    return expected, links


def links_of(database: Database) -> Links:
    with database.session() as session:
        return stored_links(session)


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
    stored = links_of(database)
    assert stored.keys() == links.keys()
    for key, (ran, failed, valued_at) in links.items():
        assert stored[key] == (pytest.approx(ran), pytest.approx(failed), valued_at), key
    assert sum(ran for ran, _, _ in links.values()) > 0 or "dune" in dataset
