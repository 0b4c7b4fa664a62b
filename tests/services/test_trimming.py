"""The live estimate kept on the repository after each plan evaluation, the
escalation it decides, and the plan policy it changes — on both backends."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from scheduler.db import Database
from scheduler.models import Repository
from scheduler.planning.monitor import poisson_interval
from scheduler.services import plan_evaluation, plans, trimming
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


def test_an_escalated_repository_plans_with_every_test_over_the_budget() -> None:
    ref = RepositoryRef(id=1, default_branch="main", settings={"mode": "fraction", "budget": 0.3},
                        escalation="why")  # fmt: skip
    policy, _ = plans.policy_of(PlanRequest(), ref, PlanDefaults())
    assert policy.escalation == "why"
    assert policy.effective_exploration_rate == 1.0
    # Ordering only drops nothing: nothing to escalate.
    ordered, _ = plans.policy_of(PlanRequest(mode="order"), ref, PlanDefaults())
    assert ordered.escalation is None
