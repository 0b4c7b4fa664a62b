"""A plan's evaluation: APFD, failures caught, what exploration found and the
Horvitz-Thompson estimate of what the budget missed — pure, then folded in
after ingestion on both backends, shards combined, idempotent."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from scheduler.db import Database
from scheduler.models import (
    KnownTest,
    Outcome,
    Plan,
    PlanItem,
    PlanStatus,
    Provider,
    Repository,
    RunSource,
    RunStatus,
)
from scheduler.planning.records import DecisionRecord
from scheduler.services import plan_evaluation, repos, runs
from scheduler.services.plan_evaluation import Observed, PlannedTest, evaluate, observed_outcomes

PASSED, FAILED = Observed(Outcome.PASSED, 1.0), Observed(Outcome.FAILED, 1.0)


# --- pure ---------------------------------------------------------------------------


def test_apfd_follows_the_plan_rank_over_the_tests_that_ran() -> None:
    items = [PlannedTest(test_id, rank, True, 1.0) for rank, test_id in enumerate([7, 5, 9, 3], 1)]
    # Rank 2 (test 5) fails; test 3 (rank 4) did not run: 3 tests ran.
    result = evaluate(items, {7: PASSED, 5: FAILED, 9: PASSED}, run_ids=[1])
    assert result["ran"] == 3
    assert result["apfd"] == pytest.approx(1 - 2 / 3 + 1 / 6)
    assert result["first_failure"] == 2
    assert result["failures"] == result["failures_caught"] == 1
    assert result["selected_not_run"] == 1
    assert result["estimated_missed_failures"] == 0.0
    assert result["estimated_miss_rate"] == 0.0


def test_exploration_failures_stand_for_what_the_budget_dropped() -> None:
    items = [
        PlannedTest(1, 1, True, 1.0, "model"),
        PlannedTest(2, 2, True, 1.0, "new"),
        PlannedTest(3, 3, True, 0.1, "exploration"),
        PlannedTest(4, 4, True, 0.25, "exploration"),
        PlannedTest(5, 5, False, 0.1, "budget"),
        PlannedTest(6, 6, False, 0.1, "budget"),
    ]
    observed = {1: FAILED, 2: PASSED, 3: FAILED, 4: PASSED, 5: FAILED}  # 5 ran anyway
    result = evaluate(items, observed, run_ids=[4, 2])
    assert result["run_ids"] == [2, 4]
    assert (result["selected"], result["dropped"], result["exploration"]) == (4, 2, 2)
    assert (result["ran_selected"], result["ran_dropped"], result["ran_exploration"]) == (4, 1, 2)
    assert result["failures"] == 3
    assert result["failures_caught"] == 2
    assert result["failures_in_exploration"] == 1
    assert result["failures_dropped_but_ran"] == 1
    # The failure found with probability 0.1 stands for 10 beyond the budget, 9 missed.
    assert result["estimated_failures_beyond_budget"] == pytest.approx(10.0)
    assert result["estimated_missed_failures"] == pytest.approx(9.0)
    assert result["estimated_miss_rate"] == pytest.approx(9 / 11)


def test_a_plan_whose_every_dropped_test_ran_missed_nothing() -> None:
    """The build expanded (or CI ran the whole suite): the failure the
    exploration sample found stands for itself, counted once."""
    items = [
        PlannedTest(1, 1, True, 1.0, "model", probability=0.2),
        PlannedTest(2, 2, True, 0.1, "exploration", probability=0.01),
        PlannedTest(3, 3, False, 0.1, "budget", probability=0.01),
    ]
    observed = {1: FAILED, 2: FAILED, 3: FAILED}
    result = evaluate(items, observed, run_ids=[1])
    assert result["expanded"] is True
    assert result["failures_in_exploration"] == 1
    assert result["estimated_failures_beyond_budget"] == 0.0
    assert result["estimated_missed_failures"] == 0.0
    assert result["estimated_miss_rate"] == 0.0
    # Each test that ran counts once in the calibration tally (no 1/p).
    assert sum(row[0] for row in result["calibration_bins"]) == 3
    assert evaluate(items, {1: FAILED, 2: FAILED}, run_ids=[1])["expanded"] is False


def test_what_the_probabilities_expected_and_what_the_plan_let_through() -> None:
    """Expected failures: the sum of every planned test's probability; let
    through: of the dropped tests that did not run (one dropped test ran
    anyway); none once every dropped test ran."""
    items = [
        PlannedTest(1, 1, True, 1.0, "model", probability=0.5),
        PlannedTest(2, 2, True, 0.1, "exploration", probability=0.125),
        PlannedTest(3, 3, False, 0.1, "budget", probability=0.25),
        PlannedTest(4, 4, False, 0.1, "budget", probability=0.0625),
    ]
    result = evaluate(items, {1: PASSED, 2: PASSED, 3: PASSED}, run_ids=[1])
    assert result["expected_failures"] == pytest.approx(0.9375)
    assert result["expected_let_through"] == pytest.approx(0.0625)
    everything = evaluate(items, {1: PASSED, 2: PASSED, 3: PASSED, 4: PASSED}, run_ids=[1])
    assert everything["expected_let_through"] == 0.0


def test_without_a_policy_every_item_counts_as_selected() -> None:
    items = [PlannedTest(1, 1, None), PlannedTest(2, 2, None)]
    result = evaluate(items, {2: FAILED, 8: FAILED}, run_ids=[1])
    assert (result["selected"], result["dropped"], result["exploration"]) == (2, 0, 0)
    assert result["failures_caught"] == 1
    # Test 8 is not in the plan: it ran last.
    assert (result["ran_outside_plan"], result["failures_outside_plan"]) == (1, 1)
    assert result["apfd"] == pytest.approx(1 - (1 + 2) / (2 * 2) + 1 / 4)


def test_items_the_policy_left_out_count_as_outside_the_plan() -> None:
    items = [PlannedTest(1, 1, True, 1.0), PlannedTest(2, 2, None), PlannedTest(3, 3, False, 0.05)]
    result = evaluate(items, {2: PASSED}, run_ids=[1])
    assert (result["tests"], result["selected"], result["dropped"]) == (2, 1, 1)
    assert result["ran_outside_plan"] == 1
    assert result["apfd"] is None  # nothing failed
    assert result["estimated_miss_rate"] is None


def test_nothing_ran() -> None:
    result = evaluate([PlannedTest(1, 1, True, 1.0)], {}, run_ids=[])
    assert (result["ran"], result["apfd"], result["apfdc"], result["first_failure"]) == (
        0,
        None,
        None,
        None,
    )


def test_the_last_attempt_of_a_run_and_the_worst_run_decide() -> None:
    rows = [
        (1, 10, 1, Outcome.FAILED, 1.0),
        (1, 10, 2, Outcome.PASSED, 0.5),  # rerun passed: a pass in run 1
        (2, 10, 1, Outcome.ERROR, 0.2),  # but run 2 errors
        (1, 11, 2, Outcome.PASSED, 0.3),
        (1, 11, 1, Outcome.FAILED, 0.4),  # attempts out of order
        (1, 12, 1, Outcome.SKIPPED, 0.0),
    ]
    assert observed_outcomes(rows) == {
        10: Observed(Outcome.ERROR, 0.2),
        11: Observed(Outcome.PASSED, 0.3),
    }


# --- after ingestion, on both backends ------------------------------------------------

TESTS = [f"tests/test_app.py::test_{letter}" for letter in "abcdef"]
# (rank, selected, propensity, rule) of each test of TESTS, as the plan API stores them.
POLICY = [
    (1, True, 1.0, "model"),
    (2, True, 1.0, "model"),
    (3, True, 1.0, "new"),
    (4, True, 0.2, "exploration"),
    (5, False, 0.2, "budget"),
    (6, False, 0.2, "budget"),
]


@pytest.fixture
def plan_id(database: Database) -> int:
    return make_plan(database)


def make_plan(database: Database, *, sha: str = "c1") -> int:
    """A repository, a commit and a plan over TESTS with the policy applied."""
    with database.session() as session:
        repository = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/app")
        commit_id = runs.ensure_commit(session, repository=repository, sha=sha, branch="main")
        plan = Plan(
            repository_id=repository.id,
            commit_id=commit_id,
            status=PlanStatus.READY,
            policy={"mode": "fraction", "budget": 0.5},
        )
        session.add(plan)
        session.flush()
        for name, (rank, _, _, _) in zip(TESTS, POLICY, strict=True):
            test = KnownTest(repository_id=repository.id, name=name, file="tests/test_app.py")
            session.add(test)
            session.flush()
            session.add(
                PlanItem(
                    plan_id=plan.id,
                    test_id=test.id,
                    probability=0.5 / rank,
                    rank=rank,
                    features=b"",
                    reason=f"Reason {rank}",
                )
            )
        plan.decision = DecisionRecord.of(
            len(POLICY),
            rows=np.arange(len(POLICY)),
            selected=np.array([selected for _, selected, _, _ in POLICY]),
            propensity=np.array([propensity for _, _, propensity, _ in POLICY]),
            rules=[rule for _, _, _, rule in POLICY],
            ranks=np.array([rank for rank, _, _, _ in POLICY]),
        ).encode()
        return plan.id


def post(
    database: Database,
    plan: int | None,
    rows: list[tuple[str, str]],
    *,
    run_key: str = "b1",
    sha: str = "c1",
) -> int:
    """Store a report as the API does, then ingest it as the worker does."""
    report = {"results": [{"test": test, "outcome": outcome} for test, outcome in rows]}
    with database.session() as session:
        stored = runs.store_run(
            session,
            repository=repos.resolve_repository(session, full_name="acme/app"),
            commit_sha=sha,
            branch="main",
            run_key=run_key,
            plan_id=plan,
            source=RunSource.JSON,
            content_type="application/json",
            report=json.dumps(report).encode(),
        )
    with database.session() as session:
        runs.ingest_run(session, stored.id)
    return stored.id


def evaluation(database: Database, plan: int) -> dict[str, Any] | None:
    with database.session() as session:
        return session.get_one(Plan, plan).evaluation


def test_the_shards_of_a_build_add_up_and_ingesting_again_changes_nothing(
    database: Database, plan_id: int
) -> None:
    a, b, c, d, e, _f = TESTS
    first = post(database, plan_id, [(a, "passed"), (c, "failed")])
    after_one = evaluation(database, plan_id)
    assert after_one is not None
    assert (after_one["runs"], after_one["ran"], after_one["failures_caught"]) == (1, 2, 1)
    assert after_one["selected_not_run"] == 2

    second = post(database, plan_id, [(b, "passed"), (d, "failed"), (e, "failed")])
    combined = evaluation(database, plan_id)
    assert combined is not None
    assert combined["run_ids"] == sorted([first, second])
    assert (combined["ran"], combined["selected_not_run"]) == (5, 0)
    assert combined["failures"] == 3
    assert combined["failures_caught"] == 2  # c (rank 3) and d (exploration, rank 4)
    assert combined["failures_in_exploration"] == 1
    assert combined["failures_dropped_but_ran"] == 1  # e ran although dropped
    # Ranks 1-5 ran; the failures are at 3, 4 and 5.
    assert combined["apfd"] == pytest.approx(1 - (3 + 4 + 5) / (5 * 3) + 1 / 10)
    assert combined["estimated_missed_failures"] == pytest.approx(4.0)  # (1 - 0.2) / 0.2
    assert combined["estimated_miss_rate"] == pytest.approx(4 / 6)
    assert combined["policy"] == {"mode": "fraction", "budget": 0.5}

    # The same report again is the same run; ingesting it again or evaluating
    # again gives the same evaluation.
    assert post(database, plan_id, [(b, "passed"), (d, "failed"), (e, "failed")]) == second
    with database.session() as session:
        assert runs.ingest_run(session, second) is RunStatus.INGESTED
        assert plan_evaluation.evaluate_plan(session, plan_id) == combined
    assert evaluation(database, plan_id) == combined


def test_a_run_without_the_plan_id_is_not_part_of_it(database: Database, plan_id: int) -> None:
    post(database, None, [(TESTS[0], "failed")])
    assert evaluation(database, plan_id) is None
    post(database, plan_id, [(TESTS[1], "passed")], run_key="b2")
    result = evaluation(database, plan_id)
    assert result is not None
    assert (result["runs"], result["ran"], result["failures"]) == (1, 1, 0)


def test_a_failed_ingestion_is_not_evaluated(database: Database, plan_id: int) -> None:
    with database.session() as session:
        stored = runs.store_run(
            session,
            repository=session.get_one(Repository, session.get_one(Plan, plan_id).repository_id),
            commit_sha="c1",
            branch="main",
            run_key=None,
            plan_id=plan_id,
            source=RunSource.JSON,
            content_type="application/json",
            report=b'{"results": "not a list"}',
        )
    with database.session() as session:
        assert runs.ingest_run(session, stored.id) is RunStatus.FAILED
    assert evaluation(database, plan_id) is None
