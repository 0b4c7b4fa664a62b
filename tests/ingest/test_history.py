"""Reading CI histories: the mutation history (changed files with line counts
and hunks) as it is, through `riskrank import` and export; and a test listed
twice in one build, which the reader, the import and the backtest's
evaluation all count as one failed result with the durations added."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler.backtest.runner import history_builds, status_changes
from scheduler.db import Database
from scheduler.ingest import hunks
from scheduler.ingest.history import FileChange, HistoryError, jobs_apart, read_history
from scheduler.ingest.hunks import MAX_HUNKS, MAX_SYMBOL, Hunk
from scheduler.models import (
    ChangedFile,
    Commit,
    Execution,
    FileStatus,
    KnownTest,
    Outcome,
    Provider,
    SuiteRun,
)
from scheduler.risk import replay
from scheduler.services import history as history_import
from scheduler.services import repos
from tests.e2e.conftest import clean_env
from tests.test_cli_outcomes import counts, one_line, repository_id, riskrank, summary


@pytest.fixture
def mutation(shared_dir: Path) -> Path:
    path = shared_dir / "datasets" / "mutation" / "more-itertools.jsonl.gz"
    if not path.exists():
        pytest.skip(f"the mutation history is not at {path}")
    return path


# --- the mutation history -------------------------------------------------------


def test_the_mutation_history_reads_as_it_is(mutation: Path) -> None:
    """The counts of its SOURCE.txt, and the changed files with their line
    counts and hunks, through the reader the import and the backtest use."""
    reports = list(read_history(mutation))
    assert len(reports) == 100
    assert sum(len(r.results) for r in reports) == 70_876
    assert len({x.test for r in reports for x in r.results}) == 746
    outcomes = [x.outcome for r in reports for x in r.results]
    assert outcomes.count(Outcome.FAILED) == 124
    assert outcomes.count(Outcome.SKIPPED) == 17
    assert outcomes.count(Outcome.ERROR) == 0

    changes = [c for r in reports for c in r.changed_files]
    assert len(changes) == 239
    assert all(c.additions is not None and c.deletions is not None for c in changes)
    assert sum(c.additions or 0 for c in changes) == 3_235
    assert sum(c.lines or 0 for c in changes) == 4_470
    assert all(c.hunks is not None for c in changes)
    hunks = [h for c in changes for h in c.hunks or ()]
    assert len(hunks) == 679
    assert sum(h.symbol is not None for h in hunks) == 300
    assert reports[0].changed_files == (
        FileChange(
            "more_itertools/more.py",
            FileStatus.MODIFIED,
            additions=1,
            deletions=1,
            hunks=(Hunk(892, 0, 893, 1, "derangements"), Hunk(3848, 1, 3848, 0, "sample")),
        ),
    )

    builds = history_builds(reports)
    assert len(builds) == 100
    assert sum(int(b.failed.sum()) for b in builds) == 124
    assert sum(bool(b.failed.any()) for b in builds) == 43
    changed = status_changes(builds)
    assert sum(int(c.sum()) for c in changed) == 81
    assert sum(bool(c.any()) for c in changed) == 26
    # "failing builds whose failures are all status changes 18/43" (SOURCE.txt)
    assert (
        sum(
            bool(b.failed.any()) and int(c.sum()) == int(b.failed.sum())
            for b, c in zip(builds, changed, strict=True)
        )
        == 18
    )
    in_memory = replay.builds_from_reports(reports)
    # What `riskrank import` says of it: the same counts as the backtest's.
    assert replay.count_history(in_memory) == replay.HistoryCounts(
        builds=100,
        tests=745,  # one test only ever skipped
        failing_builds=43,
        failures=124,
        status_changes=81,
        status_change_builds=26,
    )
    assert in_memory[0].changed_lines == 2
    assert sum(b.changed_lines or 0 for b in in_memory) == 4_470


def test_riskrank_import_keeps_the_line_counts_and_export_writes_them(
    mutation: Path, sqlite_url: str, tmp_path: Path
) -> None:
    database = Database.from_url(sqlite_url)
    env = clean_env(RISKRANK_DATABASE_URL=sqlite_url)
    try:
        ran = riskrank(
            "import", "more-itertools/mutation", str(mutation), "--create", env=env, cwd=tmp_path
        )
        assert ran.returncode == 0, ran.explain()
        assert summary(100, 70_876, "more-itertools/mutation", 0, 70_876).search(
            one_line(ran.stdout)
        ), ran.stdout
        assert (
            "the history: builds: 100, tests that ran: 745, failing builds: 43 (failures: 124), "
            "status changes: 81 (in builds: 26); changed files: 239, with line counts: 239, "
            "with hunks: 239 (hunks naming a symbol: 300)"
        ) in one_line(ran.stdout)
        with database.session() as session:
            repository = repository_id(session, "more-itertools/mutation")
            assert counts(session, repository) == {
                "commits": 100,
                "changed_files": 239,
                "test_runs": 100,
                "executions": 70_876,
                "known_tests": 746,
                "test_stats": 745,  # one test only ever skipped
                "file_test_links": 16_640,  # (changed path, test that ran) pairs
            }
            added, deleted, unknown = session.execute(
                select(
                    func.sum(ChangedFile.additions),
                    func.sum(ChangedFile.deletions),
                    func.count().filter(ChangedFile.additions.is_(None)),
                )
                .join(Commit, Commit.id == ChangedFile.commit_id)
                .where(Commit.repository_id == repository)
            ).one()
            assert (added, deleted, unknown) == (3_235, 1_235, 0)
            stored = stored_hunks(session, repository)
            assert sum(hunks is not None for hunks in stored) == 239
            assert sum(len(hunks or ()) for hunks in stored) == 679
            symbols = [h["symbol"] for hunks in stored for h in hunks or () if h["symbol"]]
            assert (len(symbols), len(set(symbols))) == (300, 169)

        exported = tmp_path / "again.jsonl.gz"
        written = riskrank(
            "export", "more-itertools/mutation", str(exported), env=env, cwd=tmp_path
        )
        assert written.returncode == 0, written.explain()
        # The changed files, their counts and hunks go through the database
        # and back as they were, build by build.
        assert [r.changed_files for r in read_history(exported)] == [
            r.changed_files for r in read_history(mutation)
        ]
        again = riskrank(
            "import",
            "more-itertools/mutation-again",
            str(exported),
            "--create",
            env=env,
            cwd=tmp_path,
        )
        assert again.returncode == 0, again.explain()
        with database.session() as session:
            assert (
                stored_hunks(session, repository_id(session, "more-itertools/mutation-again"))
                == stored
            )
    finally:
        database.dispose()


def stored_hunks(session: Session, repository: int) -> list[list[dict[str, Any]] | None]:
    return list(
        session.scalars(
            select(ChangedFile.hunks)
            .join(Commit, Commit.id == ChangedFile.commit_id)
            .where(Commit.repository_id == repository)
            .order_by(ChangedFile.id)
        )
    )


# --- a test listed twice in one build ---------------------------------------------


def jsonl_build(number: int, results: list[dict[str, object]]) -> dict[str, object]:
    return {
        "build": f"b{number}",
        "commit": f"{number:040x}",
        "time": f"2024-01-0{number}T12:00:00+00:00",
        "branch": "main",
        "changed_files": [{"path": "src/a.py", "additions": 3, "deletions": 1}],
        "results": results,
    }


def passing(*tests: str) -> list[dict[str, object]]:
    return [{"test": test, "outcome": "passed", "duration": 1.0} for test in tests]


def test_a_test_listed_twice_is_one_failed_result_with_the_durations_added(
    tmp_path: Path,
) -> None:
    """Passed, then failed, and failed, then passed (what IOF/ROL's CSV holds
    1,940 times): failed either way, for the reader, the backtest's builds
    and the replay that training uses."""
    history = tmp_path / "twice.jsonl"
    lines = [
        jsonl_build(1, passing("t1", "t2")),
        jsonl_build(
            2,
            [
                {"test": "t1", "outcome": "passed", "duration": 1.0},
                {"test": "t2", "outcome": "passed", "duration": 1.0},
                {"test": "t1", "outcome": "failed", "duration": 2.5},
            ],
        ),
        jsonl_build(
            3,
            [
                {"test": "t2", "outcome": "failed", "duration": 0.5},
                {"test": "t2", "outcome": "passed", "duration": 0.25},
                {"test": "t1", "outcome": "skipped", "duration": 9.0},
                {"test": "t1", "outcome": "passed", "duration": 1.0},
            ],
        ),
    ]
    history.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    reports = list(read_history(history))
    assert [[(x.test, x.outcome, x.duration, x.attempt) for x in r.results] for r in reports] == [
        [("t1", Outcome.PASSED, 1.0, 1), ("t2", Outcome.PASSED, 1.0, 1)],
        [("t1", Outcome.FAILED, 3.5, 1), ("t2", Outcome.PASSED, 1.0, 1)],
        # a skipped row counts for nothing, its duration neither
        [("t2", Outcome.FAILED, 0.75, 1), ("t1", Outcome.PASSED, 1.0, 1)],
    ]
    builds = history_builds(reports)
    assert [dict(zip(b.names, b.failed.tolist(), strict=True)) for b in builds] == [
        {"t1": False, "t2": False},
        {"t1": True, "t2": False},
        {"t1": False, "t2": True},
    ]
    assert [dict(zip(b.names, b.durations.tolist(), strict=True)) for b in builds] == [
        {"t1": 1.0, "t2": 1.0},
        {"t1": 3.5, "t2": 1.0},
        {"t1": 1.0, "t2": 0.75},
    ]
    assert sum(bool(b.failed.any()) for b in builds) == 2
    in_memory = replay.builds_from_reports(reports)
    assert [b.outcomes for b in in_memory][1:] == [
        {"t1": Outcome.FAILED, "t2": Outcome.PASSED},
        {"t1": Outcome.PASSED, "t2": Outcome.FAILED},
    ]
    assert [b.flaky for b in in_memory] == [set(), set(), set()]


def test_explicit_attempts_stay_a_rerun(tmp_path: Path) -> None:
    """Rows with attempt numbers (an export of a live rerun) are attempts:
    the final one is the outcome, and the test is flaky in the build."""
    history = tmp_path / "rerun.jsonl"
    line = jsonl_build(
        1,
        [
            {"test": "t1", "outcome": "failed", "duration": 1.0, "attempt": 1},
            {"test": "t1", "outcome": "passed", "duration": 2.0, "attempt": 2},
            {"test": "t2", "outcome": "passed", "duration": 1.0},
        ],
    )
    history.write_text(json.dumps(line) + "\n", encoding="utf-8")
    (report,) = read_history(history)
    assert [(x.test, x.outcome, x.attempt) for x in report.results] == [
        ("t1", Outcome.FAILED, 1),
        ("t1", Outcome.PASSED, 2),
        ("t2", Outcome.PASSED, 1),
    ]
    (build,) = replay.builds_from_reports([report])
    assert build.outcomes == {"t1": Outcome.PASSED, "t2": Outcome.PASSED}
    assert build.durations == {"t1": 2.0, "t2": 1.0}
    assert build.flaky == {"t1"}


RETECS_TWICE = """\
Id;Name;BuildId;Duration;CalcPrio;LastRun;Verdict;Cycle;LastResults
1;t1;1;1.0;0;2020-01-01 09:00:00;0;1;[]
2;t2;1;1.0;0;2020-01-01 09:00:00;0;1;[]
3;t1;2;1.0;0;2020-01-02 09:00:00;0;2;[0]
4;t2;2;1.0;0;2020-01-02 09:00:00;0;2;[0]
5;t1;3;2.0;0;2020-01-03 09:00:00;1;3;[0]
6;t1;3;0.5;0;2020-01-03 09:05:00;0;3;[1, 0]
7;t2;3;1.0;0;2020-01-03 09:00:00;0;3;[0]
8;t1;4;1.0;0;2020-01-04 09:00:00;0;4;[0]
9;t2;4;1.0;0;2020-01-04 09:00:00;0;4;[0]
"""


def test_the_backtest_counts_a_failure_in_any_row_as_a_failing_build(tmp_path: Path) -> None:
    """`riskrank backtest` on a RETECS CSV whose build 3 lists t1 twice,
    failed then passed: a failing build and a status change (it was one
    passed result, no failing build, before)."""
    history = tmp_path / "twice.csv.gz"
    history.write_bytes(gzip.compress(RETECS_TWICE.encode()))
    ran = riskrank(
        "backtest",
        str(history),
        "--warmup",
        "2",
        "--retrain-every",
        "0",
        "--json-out",
        "out.json",
        env=clean_env(),
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.explain()
    document = json.loads((tmp_path / "out.json").read_text())
    assert document["dataset"]["evaluated_builds"] == 2
    assert document["dataset"]["failing_builds"] == {"all": 1, "changes": 1}
    (third, _) = history_builds(read_history(history))[2:]
    assert dict(zip(third.names, third.durations.tolist(), strict=True)) == {"t1": 2.5, "t2": 1.0}


def test_the_import_stores_one_execution_for_a_test_listed_twice(
    sqlite_url: str, tmp_path: Path
) -> None:
    history = tmp_path / "twice.csv"
    history.write_text(RETECS_TWICE, encoding="utf-8")
    database = Database.from_url(sqlite_url)
    try:
        ran = riskrank(
            "import",
            "acme/twice",
            str(history),
            "--create",
            env=clean_env(RISKRANK_DATABASE_URL=sqlite_url),
            cwd=tmp_path,
        )
        assert ran.returncode == 0, ran.explain()
        assert summary(4, 8, "acme/twice", 0, 8).search(one_line(ran.stdout)), ran.stdout
        assert (
            "the history: builds: 4, tests that ran: 2, failing builds: 1 (failures: 1), "
            "status changes: 1 (in builds: 1); changed files: none"
        ) in one_line(ran.stdout)
        with database.session() as session:
            rows = session.execute(
                select(Commit.sha, Execution.attempt, Execution.outcome, Execution.duration)
                .join(SuiteRun, SuiteRun.id == Execution.run_id)
                .join(Commit, Commit.id == SuiteRun.commit_id)
                .join(KnownTest, KnownTest.id == Execution.test_id)
                .where(
                    SuiteRun.repository_id == repository_id(session, "acme/twice"),
                    KnownTest.name == "t1",
                )
                .order_by(SuiteRun.id)
            ).all()
        assert [tuple(row) for row in rows] == [
            ("build-1", 1, Outcome.PASSED, 1.0),
            ("build-2", 1, Outcome.PASSED, 1.0),
            ("build-3", 1, Outcome.FAILED, 2.5),
            ("build-4", 1, Outcome.PASSED, 1.0),
        ]
    finally:
        database.dispose()


def test_a_changed_file_with_one_line_count_is_refused(tmp_path: Path) -> None:
    history = tmp_path / "half.jsonl"
    line = jsonl_build(1, passing("t1"))
    line["changed_files"] = [{"path": "src/a.py", "additions": 3}]
    history.write_text(json.dumps(line) + "\n", encoding="utf-8")
    with pytest.raises(
        HistoryError, match=r"half\.jsonl:1: (.|\n)*give both additions and deletions"
    ):
        list(read_history(history))


# --- hunks: bounded where they are stored ---------------------------------------


def hunk(
    old_start: int, old_lines: int, new_start: int, new_lines: int, symbol: str | None
) -> dict[str, Any]:
    return {
        "old_start": old_start,
        "old_lines": old_lines,
        "new_start": new_start,
        "new_lines": new_lines,
        "symbol": symbol,
    }


def test_a_files_hunks_are_stored_within_the_bounds(database: Database, tmp_path: Path) -> None:
    """The first MAX_HUNKS hunks of a file, a symbol over MAX_SYMBOL
    characters dropped (its hunk kept); a file without hunks stores NULL,
    one with an empty list stores it empty."""
    many = [hunk(n, 1, n, 1, f"f{n}") for n in range(MAX_HUNKS + 5)]
    long_name = "x" * (MAX_SYMBOL + 1)
    line = jsonl_build(1, passing("t1"))
    line["changed_files"] = [
        {"path": "src/many.py", "hunks": many},
        {
            "path": "src/long.py",
            "hunks": [hunk(1, 0, 2, 1, long_name), hunk(9, 0, 9, 1, "x" * 200)],
        },
        {"path": "src/none.py"},
        {"path": "src/empty.py", "hunks": []},
    ]
    history = tmp_path / "bounds.jsonl"
    history.write_text(json.dumps(line) + "\n", encoding="utf-8")
    [report] = read_history(history)
    with database.session() as session:
        repository = repos.add_repository(
            session, provider=Provider.GENERIC, full_name="acme/bounds"
        ).id
    history_import.import_history(database, repository_id=repository, reports=[report])
    with database.session() as session:
        stored = {
            path: stored_hunks
            for path, stored_hunks in session.execute(
                select(ChangedFile.path, ChangedFile.hunks).order_by(ChangedFile.id)
            )
        }
        exported = list(history_import.export_history(session, repository_id=repository))
    assert stored["src/many.py"] == many[:MAX_HUNKS]
    assert len(stored["src/many.py"]) == 100
    assert stored["src/long.py"] == [hunk(1, 0, 2, 1, None), hunk(9, 0, 9, 1, "x" * 200)]
    assert (stored["src/none.py"], stored["src/empty.py"]) == (None, [])
    # The reader bounds them as the database does: replay from the file and
    # from the database see the same hunks.
    assert [c.hunks for c in report.changed_files] == [
        hunks.from_json(stored[c.path]) for c in report.changed_files
    ]
    [build] = exported
    assert [c.get("hunks") for c in build["changed_files"]] == list(stored.values())


def test_a_reports_job_is_read_and_kept_apart_only_when_asked(tmp_path: Path) -> None:
    """A RETECS `Variant` and a JSONL `job` name the CI job of a report;
    `jobs_apart` puts the job in its tests' ids, and leaves a report
    without one as it is."""
    retecs = tmp_path / "variants.csv"
    retecs.write_text(
        "Id;Name;BuildId;Duration;CalcPrio;LastRun;Verdict;Cycle;LastResults;Variant\n"
        "1;t1;7;1.0;0;2024-01-01 10:00:00;0;1;[];gcc  12\n"
        "2;t1;7;1.0;0;2024-01-01 10:00:00;1;1;[];clang\n"
        "3;t2;7;1.0;0;2024-01-01 10:00:00;0;1;[];\n",
        encoding="utf-8",
    )
    jsonl = tmp_path / "history.jsonl"
    jsonl.write_text(
        json.dumps({"build": 1, "job": "linux", "results": [{"test": "a", "outcome": "failed"}]})
        + "\n"
        + json.dumps({"build": 1, "results": [{"test": "a", "outcome": "passed"}]})
        + "\n",
        encoding="utf-8",
    )
    variants = list(read_history(retecs))
    assert [(r.job, [x.test for x in r.results]) for r in variants] == [
        (None, ["t2"]),
        ("clang", ["t1"]),
        ("gcc 12", ["t1"]),
    ]
    apart = list(jobs_apart(variants))
    assert [[x.test for x in r.results] for r in apart] == [
        ["t2"],
        ["t1  [job: clang]"],
        ["t1  [job: gcc 12]"],
    ]
    assert [x.outcome for r in apart for x in r.results] == [
        Outcome.PASSED,
        Outcome.FAILED,
        Outcome.PASSED,
    ]
    lines = list(read_history(jsonl))
    assert [r.job for r in lines] == ["linux", None]
    assert [x.test for r in jobs_apart(lines) for x in r.results] == ["a  [job: linux]", "a"]
    # Merged (the default), the build has one test, failed in one of its jobs.
    (merged,) = history_builds(lines)
    assert (merged.names, merged.failed.tolist()) == (("a",), [True])
    (split,) = history_builds(jobs_apart(lines))
    assert (split.names, split.failed.tolist()) == (("a  [job: linux]", "a"), [True, False])
