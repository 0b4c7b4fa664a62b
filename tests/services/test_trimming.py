"""The live estimate kept on the repository after each plan evaluation, the
calibration error of what plans served, the escalation they decide, and the
plan policy it changes — on both backends."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
from sqlalchemy import select

from scheduler.db import Database
from scheduler.models import (
    KnownTest,
    ModelStatus,
    Plan,
    PlanItem,
    PlanStatus,
    Repository,
    RiskModel,
)
from scheduler.planning.monitor import MIN_CALIBRATION_BUILDS, poisson_interval
from scheduler.planning.records import DecisionRecord
from scheduler.services import plan_evaluation, plans, repo_settings, runs, trimming
from scheduler.services.plans import PlanDefaults, PlanRequest, RepositoryRef
from tests.services.test_plan_evaluation import TESTS, make_plan, post


def state(database: Database) -> dict:  # type: ignore[type-arg]
    with database.session() as session:
        repository = session.scalars(select(Repository)).one()
        assert repository.trimming is not None
        return dict(repository.trimming)


def test_an_evaluation_updates_the_estimate_and_its_escalation(database: Database) -> None:
    plan_id = make_plan(database)
    with database.session() as session:
        assert session.scalars(select(Repository)).one().trimming is None
    _a, _b, c, d, _e, _f = TESTS
    # c (selected) and d (the exploration sample, p = 0.2) fail.
    post(database, plan_id, [(c, "failed"), (d, "failed")])
    found = state(database)
    low, high = poisson_interval(1)
    assert found["builds"] == 1
    assert (found["failures_caught"], found["explored_failures"]) == (2, 1)
    assert found["estimated_missed"] == pytest.approx(4.0)  # 1/0.2 - 1
    assert found["miss_rate"] == pytest.approx(4 / 6)
    # The rate at k explored failures: 4 k / (1 caught elsewhere + 5 k).
    assert found["miss_rate_low"] == pytest.approx(4 * low / (1 + 5 * low), abs=1e-6)
    assert found["miss_rate_high"] == pytest.approx(4 * high / (1 + 5 * high), abs=1e-6)
    assert found["ceiling"] == 0.10  # fraction mode's default promise
    assert found["miss_rate_low"] < 0.10
    assert found["escalation"] is None

    # A repository that promises less than the lower bound escalates.
    with database.session() as session:
        repository = session.scalars(select(Repository)).one()
        repository.settings = {"miss_ceiling": 0.05}
        plan_evaluation.evaluate_plan(session, plan_id)
    escalated = state(database)
    assert escalated["ceiling"] == 0.05
    assert escalated["escalation"] == (
        "trimming let through an estimated 66.7% of the failures over the last 1 evaluated "
        "builds (95% interval 9.0% to 77.2%), more than the 5.0% promised"
    )
    with database.session() as session:
        repository = session.scalars(select(Repository)).one()
        assert trimming.escalation_of(repository) == escalated["escalation"]


def test_a_confidence_plan_s_evaluation_sets_how_far_the_next_may_go(database: Database) -> None:
    """A `confidence` 0.8 plan over TESTS (probabilities 0.5 / rank, 1.225
    expected failures) that let ranks 5 and 6 through (0.1833 expected):
    allowed 0.2 * 1.225, it let through less, so the next plans may go
    0.9 * 0.245 / 0.1833 = 1.2 times as far; the plan API's policy reads it."""
    plan_id = make_plan(database)
    with database.session() as session:
        plan = session.get_one(Plan, plan_id)
        plan.policy = {"mode": "confidence", "budget": 0.8, "exploration_rate": 0.2}
    post(database, plan_id, [(TESTS[2], "failed")])
    with database.session() as session:
        evaluation = session.get_one(Plan, plan_id).evaluation
        assert evaluation is not None
    expected = sum(0.5 / rank for rank in range(1, 7))
    assert evaluation["expected_failures"] == pytest.approx(expected, abs=1e-6)
    let_through = 0.5 / 5 + 0.5 / 6
    assert evaluation["expected_let_through"] == pytest.approx(let_through, abs=1e-6)
    found = state(database)
    scale = 0.9 * 0.2 * expected / let_through
    assert found["confidence_scale"] == pytest.approx(scale, abs=1e-5)
    with database.session() as session:
        repository = session.scalars(select(Repository)).one()
        repository.settings = {"mode": "confidence", "budget": 0.8}
        ref = RepositoryRef(id=repository.id, default_branch="main",
                            settings=dict(repository.settings),
                            confidence_scale=trimming.confidence_scale_of(repository))  # fmt: skip
    policy, _ = plans.policy_of(PlanRequest(), ref, PlanDefaults())
    assert policy.confidence_scale == pytest.approx(scale, abs=1e-5)


def test_ceilings_of_the_wrong_type_are_ignored_as_plans_ignore_them(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    plan_id = make_plan(database)
    post(database, plan_id, [(TESTS[2], "failed")])
    with database.session() as session:
        repository = session.scalars(select(Repository)).one()
        # Written around `riskrank repo settings` (which refuses them): JSON's
        # true is no share, though Python counts it as 1.
        repository.settings = {"miss_ceiling": True, "calibration_ceiling": "0.2"}
        with caplog.at_level(logging.WARNING, logger="scheduler.services.plans.params"):
            plan_evaluation.evaluate_plan(session, plan_id)
    found = state(database)
    assert (found["ceiling"], found["calibration_ceiling"]) == (0.10, 0.02)  # the defaults
    assert "miss_ceiling must be a number, not True" in caplog.text
    assert "calibration_ceiling must be a number, not '0.2'" in caplog.text
    # The same check refuses them where the operator sets them.
    with (
        database.session() as session,
        pytest.raises(repo_settings.SettingsError, match="miss_ceiling must be a number, not True"),
    ):
        repo_settings.update_settings(session, full_name="acme/app", changes={"miss_ceiling": True})


def test_an_escalated_repository_plans_with_every_test_over_the_budget() -> None:
    ref = RepositoryRef(id=1, default_branch="main", settings={"mode": "fraction", "budget": 0.3},
                        escalation="why")  # fmt: skip
    policy, _ = plans.policy_of(PlanRequest(), ref, PlanDefaults())
    assert policy.escalation == "why"
    assert policy.effective_exploration_rate == 1.0
    # Ordering only drops nothing: nothing to escalate.
    ordered, _ = plans.policy_of(PlanRequest(mode="order"), ref, PlanDefaults())
    assert ordered.escalation is None


def test_a_plan_expands_as_the_repository_says_and_pays_for_its_expansions() -> None:
    ref = RepositoryRef(id=1, default_branch="main", settings={"mode": "fraction", "budget": 0.3},
                        expansion_share=0.1)  # fmt: skip
    policy, _ = plans.policy_of(PlanRequest(), ref, PlanDefaults())
    assert (policy.expand_after, policy.expansion_share) == (2, 0.1)
    off = replace(ref, settings={"mode": "fraction", "budget": 0.3, "expand_after": 0})
    policy, _ = plans.policy_of(PlanRequest(), off, PlanDefaults())
    assert (policy.expand_after, policy.expansion_share) == (0, 0.0)
    # One build of a full window expanded, running its 4 dropped tests; the
    # 99 others dropped 4 each; their watched tests failed 2 times in 100.
    quiet = {"dropped": 4, "watched": 10, "watched_failures": 0}
    expanded = {"expanded": True, "dropped": 4, "ran_dropped": 4, "watched": 10,
                "watched_failures": 20}  # fmt: skip
    state = trimming.state_of([expanded] + [quiet] * 99, None)
    assert (state["expansion_share"], state["expanded_builds"]) == (0.01, 1)
    assert state["watched_failure_rate"] == 0.02
    assert state["expansion_catch"] == 0.0  # no exploration sample to compare with
    assert trimming.sentence(state).endswith(
        "; 1 build expanded, running 1.0% of the tests the plans dropped"
    )
    # The plans that follow pay for it and expect as many watched failures.
    ref = replace(ref, expansion_share=state["expansion_share"], watched_failure_rate=0.02,
                  expansion_catch=0.3)  # fmt: skip
    policy, _ = plans.policy_of(PlanRequest(), ref, PlanDefaults())
    assert (policy.expansion_share, policy.watched_failure_rate) == (0.01, 0.02)
    assert policy.expansion_catch == 0.3


def test_confidence_plans_use_what_the_window_left_them() -> None:
    """Three `confidence` 0.8 plans, each expecting 1 failure and allowed
    to let 0.2 through: they let 0.2, 0.1 and none through (forced tests
    held the rest). 0.3 of the 0.6 allowed; aiming at CONFIDENCE_AIM * 0.2
    * 3 = 0.54 let through, the next plans may go 1.8 times as far; a
    repository in another mode stays at 1."""
    policy = {"mode": "confidence", "budget": 0.8, "confidence_scale": 1.0}
    dropped = {"dropped": 4, "expected_failures": 1.0, "expected_let_through": 0.2,
               "policy": policy}  # fmt: skip
    some = dropped | {"expected_let_through": 0.1}
    held = dropped | {"expected_let_through": 0.0}
    state = trimming.state_of([dropped, some, held], None)
    assert state["confidence_scale"] == pytest.approx(1.8)
    assert trimming.sentence(state).endswith(
        "; confidence plans may let through 1.80 times their 1 - t, so that these builds "
        "keep t of their expected failures"
    )
    fraction = {"mode": "fraction", "budget": 0.5}
    assert trimming.state_of([dropped | {"policy": fraction}], None)["confidence_scale"] == 1.0
    ref = RepositoryRef(id=1, default_branch="main", settings={"mode": "confidence",
                        "budget": 0.8}, confidence_scale=state["confidence_scale"])  # fmt: skip
    planned, _ = plans.policy_of(PlanRequest(), ref, PlanDefaults())
    assert planned.confidence_scale == pytest.approx(1.8)
    assert planned.confidence_target == pytest.approx(0.64)
    other, _ = plans.policy_of(PlanRequest(mode="fraction", budget=0.3), ref, PlanDefaults())
    assert other.confidence_scale == 1.0
    # Out of bounds on the repository (written by hand): clamped.
    wild, _ = plans.policy_of(PlanRequest(), replace(ref, confidence_scale=9.0), PlanDefaults())
    assert wild.confidence_scale == 2.0


def serve(database: Database, number: int, probability: float, model_id: int | None) -> int:
    """A plan of TESTS on commit `number` (after make_plan's), every test
    served with `probability` and selected by the budget (fraction 0.5)."""
    with database.session() as session:
        repository = session.scalars(select(Repository)).one()
        commit_id = runs.ensure_commit(
            session, repository=repository, sha=f"d{number}", branch="main"
        )
        plan = Plan(
            repository_id=repository.id,
            commit_id=commit_id,
            model_id=model_id,
            status=PlanStatus.READY,
            policy={"mode": "fraction", "budget": 0.5},
        )
        session.add(plan)
        session.flush()
        tests = {t.name: t.id for t in session.scalars(select(KnownTest))}
        for rank, name in enumerate(TESTS, 1):
            session.add(
                PlanItem(
                    plan_id=plan.id,
                    test_id=tests[name],
                    probability=probability,
                    rank=rank,
                    features=b"",
                )
            )
        plan.decision = DecisionRecord.of(
            len(TESTS),
            rows=np.arange(len(TESTS)),
            selected=np.ones(len(TESTS), dtype=bool),
            propensity=np.ones(len(TESTS)),
            rules=["model"] * len(TESTS),
            ranks=np.arange(1, len(TESTS) + 1),
        ).encode()
        return plan.id


def test_calibration_drift_escalates_until_a_retrained_model_is_back_under(
    database: Database,
) -> None:
    make_plan(database)  # the repository and its tests (never evaluated)
    a = TESTS[0]
    # The heuristic serves 0.3 to every test; 1 test in 6 fails: the
    # observed rate is 1/6, the calibration error 0.3 - 1/6.
    for number in range(MIN_CALIBRATION_BUILDS):
        plan_id = serve(database, number, 0.3, None)
        post(database, plan_id, [(name, "failed" if name == a else "passed") for name in TESTS],
             run_key=f"r{number}", sha=f"d{number}")  # fmt: skip
        found = state(database)
        assert found["calibration_builds"] == number + 1
        assert found["calibration_error"] == pytest.approx(0.3 - 1 / 6, abs=1e-6)
        assert found["calibration_ceiling"] == 0.02  # the default
        if number + 1 < MIN_CALIBRATION_BUILDS:
            assert found["escalation"] is None  # too few builds to tell
    reason = (
        "calibration error 0.133 over the last 20 evaluated builds (95% interval from 0.133) "
        "is above 0.02"
    )
    assert (found["escalation"], found["escalated_by"]) == (reason, ["calibration"])
    assert trimming.sentence(found).endswith(
        "; calibration error 0.133 over 20 evaluated builds of the serving scorer "
        "(ceiling 0.02). Escalated: every test over the budget runs"
    )
    # The plans the repository serves now run every test over the budget, and say why.
    with database.session() as session:
        repository = session.scalars(select(Repository)).one()
        ref = RepositoryRef(
            id=repository.id, default_branch="main", settings={"mode": "fraction", "budget": 0.3},
            escalation=trimming.escalation_of(repository),
        )  # fmt: skip
        status = trimming.status_of(session, repository)
    policy, _ = plans.policy_of(PlanRequest(), ref, PlanDefaults())
    assert (policy.escalation, policy.effective_exploration_rate) == (reason, 1.0)
    assert status["escalation"] == reason
    assert status["trimming"]["calibration_error"] == pytest.approx(0.3 - 1 / 6, abs=1e-6)

    # A ceiling the repository sets (as `riskrank repo settings` does) holds
    # from the next evaluation on; one out of range is refused.
    with database.session() as session:
        with pytest.raises(repo_settings.SettingsError, match="a share from 0 to 1"):
            repo_settings.update_settings(
                session, full_name="acme/app", changes={"calibration_ceiling": 1.5}
            )
        repo_settings.update_settings(
            session, full_name="acme/app", changes={"calibration_ceiling": 0.2}
        )
        plan_evaluation.evaluate_plan(session, plan_id)
    assert (state(database)["calibration_ceiling"], state(database)["escalation"]) == (0.2, None)
    with database.session() as session:
        repo_settings.update_settings(
            session, full_name="acme/app", changes={}, unset=["calibration_ceiling"]
        )
        plan_evaluation.evaluate_plan(session, plan_id)
    assert state(database)["escalation"] == reason

    # A retrained model serves probabilities that hold: its plans are a
    # window of their own, and the escalation ends with its first plan.
    with database.session() as session:
        repository = session.scalars(select(Repository)).one()
        model = RiskModel(
            repository_id=repository.id, version=1, status=ModelStatus.ACTIVE,
            model_text="", feature_names=[], params={}, metrics={},
        )  # fmt: skip
        session.add(model)
        session.flush()
        model_id = model.id
    plan_id = serve(database, 100, 1 / 6, model_id)
    post(database, plan_id, [(name, "failed" if name == a else "passed") for name in TESTS],
         run_key="r100", sha="d100")  # fmt: skip
    after = state(database)
    assert after["calibration_builds"] == 1
    assert after["calibration_error"] == pytest.approx(0.0, abs=1e-6)
    assert (after["escalation"], after["escalated_by"]) == (None, [])


def test_ordering_only_never_escalates_on_calibration() -> None:
    tallies = {"calibration_bins": [[10.0, 3.0, 0.0]] + [[0.0, 0.0, 0.0]] * 9, "model_id": None}
    ordered = [tallies | {"policy": {"mode": "order"}}] * MIN_CALIBRATION_BUILDS
    found = trimming.state_of(ordered, None)
    assert found["calibration_error"] == pytest.approx(0.3)
    assert (found["calibration_ceiling"], found["escalation"]) == (None, None)
    trimmed = [tallies | {"policy": {"mode": "confidence", "budget": 0.9}}] * MIN_CALIBRATION_BUILDS
    assert trimming.state_of(trimmed, None)["escalated_by"] == ["calibration"]
