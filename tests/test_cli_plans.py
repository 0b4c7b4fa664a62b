"""`riskrank plans show`, run as users run it: the installed command in a
subprocess, against a migrated SQLite database holding a plan, before and
after a run that followed it reported."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import select

from scheduler.db import Database
from scheduler.models import Commit, Repository
from scheduler.services import runs
from tests.conftest import empty_all_tables
from tests.e2e.conftest import clean_env
from tests.services.test_plan_evaluation import TESTS, make_plan, post
from tests.test_cli_outcomes import one_line, riskrank, run_together

SHA = "c1" * 20  # the planned commit


def flat(output: str) -> str:
    """Output with Rich's table rules and line wrapping undone."""
    return one_line(re.sub(r"[\u2500-\u257f]", " ", output))


@pytest.fixture
def sqlite_database(sqlite_url: str) -> Iterator[Database]:
    database = Database.from_url(sqlite_url)
    empty_all_tables(database)
    yield database
    database.dispose()


def test_plans_show_prints_the_plan_then_its_evaluation(
    sqlite_url: str, sqlite_database: Database, tmp_path: Path
) -> None:
    command = partial(riskrank, env=clean_env(RISKRANK_DATABASE_URL=sqlite_url), cwd=tmp_path)
    plan_id = make_plan(sqlite_database, sha=SHA)

    as_text, as_json, limited, unknown, no_repo = run_together(
        lambda: command("plans", "show", "acme/app", SHA),
        lambda: command("plans", "show", "acme/app", SHA[:7], "--json"),
        lambda: command("plans", "show", "acme/app", "C1C1", "--limit", "2"),
        lambda: command("plans", "show", "acme/app", "d00d"),
        lambda: command("plans", "show", "acme/nothing", SHA),
    )
    assert as_text.returncode == 0, as_text.explain()
    text = flat(as_text.stdout)
    assert f"plan {plan_id} of acme/app at c1c1c1c1c1c1 (main): ready, no model, 6 tests, 4" in text
    assert "6 tests, 4 selected" in text
    assert "policy: mode fraction, budget 0.5" in text
    assert "1 tests/test_app.py::test_a 0.500 yes model Reason 1" in text
    assert "4 tests/test_app.py::test_d 0.125 yes exploration Reason 4" in text
    assert "6 tests/test_app.py::test_f 0.083 no budget Reason 6" in text
    assert "no outcomes of runs that followed this plan yet" in text
    assert "repository: no evaluated plan yet: nothing is known of what trimming misses" in text

    assert as_json.returncode == 0, as_json.explain()
    shown = json.loads(as_json.stdout)
    assert (shown["plan_id"], shown["commit"], shown["status"]) == (plan_id, SHA, "ready")
    assert (shown["total"], shown["selected"], shown["evaluation"]) == (6, 4, None)
    assert [item["test"] for item in shown["items"]] == TESTS
    assert shown["items"][3] == {
        "rank": 4,
        "test": TESTS[3],
        "probability": 0.125,
        "selected": True,
        "propensity": 0.2,
        "rule": "exploration",
        "reason": "Reason 4",
    }

    assert limited.returncode == 0, limited.explain()
    assert "the 2 riskiest of 6 tests (--limit to see more)" in flat(limited.stdout)
    assert TESTS[2] not in limited.stdout
    assert unknown.returncode == 1
    assert "error: riskrank knows no commit d00d of acme/app" in one_line(unknown.stderr)
    assert no_repo.returncode == 1
    assert "acme/nothing" in no_repo.stderr

    a, _b, c, d, _e, _f = TESTS
    post(sqlite_database, plan_id, [(a, "passed"), (c, "failed"), (d, "failed")], sha=SHA)
    after_text, after_json, status_text, status_json = run_together(
        lambda: command("plans", "show", "acme/app", SHA),
        lambda: command("plans", "show", "acme/app", SHA, "--json"),
        lambda: command("repo", "status", "acme/app"),
        lambda: command("repo", "status", "acme/app", "--json"),
    )
    assert after_text.returncode == 0, after_text.explain()
    text = flat(after_text.stdout)
    assert "evaluation over 1 run: 3 tests ran, 2 failed" in text
    assert "failures in the exploration sample 1" in text
    assert "estimated failures missed 4.000" in text
    live = (
        "over the last 1 evaluated build: trimming let through an estimated 66.7% of the "
        "failures (95% interval 9.0% to 77.2%, from 1 failures in the exploration sample); "
        "the mode promises at most 10.0%"
    )
    assert f"repository: {live}" in text
    assert json.loads(after_json.stdout)["trimming"]["miss_rate"] == pytest.approx(4 / 6)
    assert status_text.returncode == 0, status_text.explain()
    assert "acme/app: no model (heuristic plans), not calibrated yet" in flat(status_text.stdout)
    assert live in flat(status_text.stdout)
    status = json.loads(status_json.stdout)
    assert (status["model_version"], status["calibration_error"], status["escalation"]) == (
        None,
        None,
        None,
    )
    assert status["trimming"]["explored_failures"] == 1
    evaluation = json.loads(after_json.stdout)["evaluation"]
    assert (evaluation["failures_caught"], evaluation["failures_in_exploration"]) == (2, 1)
    assert evaluation["apfd"] == pytest.approx(1 - (2 + 3) / (3 * 2) + 1 / 6)
    assert evaluation["expanded"] is False

    # Another run of the build ran the two dropped tests too: the build
    # expanded (test_c, selected by the budget, had failed), nothing was let
    # through, and what ran is read once each.
    e, f = TESTS[4], TESTS[5]
    post(sqlite_database, plan_id, [(e, "passed"), (f, "failed")], sha=SHA, run_key="b2")
    expanded_text, expanded_json = run_together(
        lambda: command("plans", "show", "acme/app", SHA),
        lambda: command("plans", "show", "acme/app", SHA, "--json"),
    )
    assert expanded_text.returncode == 0, expanded_text.explain()
    assert (
        "expanded: 1 tests that had passed failed, and the 2 tests the plan dropped ran too"
        in flat(expanded_text.stdout)
    )
    evaluation = json.loads(expanded_json.stdout)["evaluation"]
    assert (evaluation["expanded"], evaluation["estimated_missed_failures"]) == (True, 0.0)
    assert (evaluation["watched"], evaluation["watched_failures"]) == (2, 1)


def test_plans_show_takes_a_full_id_or_a_prefix_of_one_commit_only(
    sqlite_url: str, sqlite_database: Database, tmp_path: Path
) -> None:
    command = partial(riskrank, env=clean_env(RISKRANK_DATABASE_URL=sqlite_url), cwd=tmp_path)
    make_plan(sqlite_database, sha=SHA)
    twin = "c1c1" + "0" * 36
    with sqlite_database.session() as session:
        repository = session.scalars(select(Repository)).one()
        runs.ensure_commit(session, repository=repository, sha=twin, branch="main")

    head, short, ambiguous, unique, unplanned, unknown = run_together(
        lambda: command("plans", "show", "acme/app", "HEAD"),
        lambda: command("plans", "show", "acme/app", "c1c"),
        lambda: command("plans", "show", "acme/app", "c1c1"),
        lambda: command("plans", "show", "acme/app", "c1c1c", "--json"),
        lambda: command("plans", "show", "acme/app", "c1c10"),
        lambda: command("plans", "show", "acme/app", "0" * 40),
    )
    assert (head.returncode, head.stdout) == (2, ""), head.explain()
    assert (
        "error: 'HEAD' is not a commit id: give the full 40 (or 64) hex digits, as "
        "`git rev-parse HEAD` prints them, or at least 4 of a commit riskrank knows"
    ) in one_line(head.stderr)
    assert (short.returncode, short.stdout) == (2, ""), short.explain()
    assert "error: 'c1c' is not a commit id" in one_line(short.stderr)
    assert (ambiguous.returncode, ambiguous.stdout) == (2, ""), ambiguous.explain()
    assert f"error: c1c1 names 2 commits of acme/app ({twin}, {SHA}): give more digits" in one_line(
        ambiguous.stderr
    )
    assert unique.returncode == 0, unique.explain()
    assert json.loads(unique.stdout)["commit"] == SHA
    assert unplanned.returncode == 1, unplanned.explain()
    assert f"error: commit {twin} of acme/app has no plan yet" in one_line(unplanned.stderr)
    assert unknown.returncode == 1, unknown.explain()
    assert f"error: riskrank knows no commit {'0' * 40} of acme/app" in one_line(unknown.stderr)
    with sqlite_database.session() as session:
        assert sorted(session.scalars(select(Commit.sha))) == [twin, SHA]
