"""Calibration refreshed as outcomes arrive: every REFRESH_EVERY evaluated
plans, the scorer's map is fit again on the plans' stored feature vectors and
the outcomes of their runs, each exploration row counted 1/p times — on both
backends, against the fit worked out from the same rows."""

from __future__ import annotations

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
    Provider,
    RiskModel,
)
from scheduler.planning.records import DecisionRecord
from scheduler.risk import calibration
from scheduler.risk.features import FEATURE_NAMES, FeatureMatrix
from scheduler.risk.heuristic import heuristic_scores
from scheduler.services import recalibration, repos, runs
from tests.services.test_plan_evaluation import post

TESTS = [f"tests/test_app.py::test_{i}" for i in range(10)]
# (selected, propensity, rule) per test: the last two are over the budget,
# one of them drawn into the exploration sample with p = 0.25.
DECIDED = [(True, 1.0, "model")] * 8 + [(True, 0.25, "exploration"), (False, 0.25, "budget")]
RECENCY = FEATURE_NAMES.index("new_or_recent")


def vector(test: int) -> np.ndarray:
    values = np.zeros(len(FEATURE_NAMES), dtype="<f4")
    values[RECENCY] = 1.0 - test / 10  # the heuristic's recency signal, falling with the index
    return values


def fails(test: int, plan: int) -> bool:
    """The riskier tests (low index) fail more often; both outcomes in every half."""
    return (test * 7 + plan * 3) % 10 < 4 - test // 3


def make_plans(database: Database, count: int) -> list[int]:
    with database.session() as session:
        repository = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/app")
        session.add(
            RiskModel(
                repository_id=repository.id,
                version=1,
                status=ModelStatus.RETIRED,
                model_text="",
                feature_names=list(FEATURE_NAMES),
                params={},
                metrics={},
            )
        )
        tests = []
        for name in TESTS:
            test = KnownTest(repository_id=repository.id, name=name, file="tests/test_app.py")
            session.add(test)
            session.flush()
            tests.append(test.id)
        plan_ids = []
        for number in range(count):
            commit_id = runs.ensure_commit(
                session, repository=repository, sha=f"{number + 1:040x}", branch="main"
            )
            plan = Plan(
                repository_id=repository.id,
                commit_id=commit_id,
                status=PlanStatus.HEURISTIC,
                feature_names=list(FEATURE_NAMES),
                policy={"mode": "fraction", "budget": 0.8, "exploration_rate": 0.25},
            )
            session.add(plan)
            session.flush()
            for rank, test_id in enumerate(tests, start=1):
                session.add(
                    PlanItem(
                        plan_id=plan.id,
                        test_id=test_id,
                        probability=0.1,
                        rank=rank,
                        features=vector(rank - 1).tobytes(),
                    )
                )
            plan.decision = DecisionRecord.of(
                len(TESTS),
                rows=np.arange(len(TESTS)),
                selected=np.array([selected for selected, _, _ in DECIDED]),
                propensity=np.array([p for _, p, _ in DECIDED]),
                rules=[rule for _, _, rule in DECIDED],
                ranks=np.arange(1, len(TESTS) + 1),
            ).encode()
            plan_ids.append(plan.id)
        return plan_ids


def test_the_map_is_refit_on_the_newest_plans_every_n_evaluations(database: Database) -> None:
    every = recalibration.REFRESH_EVERY
    plan_ids = make_plans(database, every)
    for number, plan_id in enumerate(plan_ids):
        ran = [
            (name, "failed" if fails(test, number) else "passed")
            for test, name in enumerate(TESTS[:9])  # the dropped one did not run
        ]
        post(database, plan_id, ran, run_key=f"b{number}", sha=f"{number + 1:040x}")
        if number == every - 2:
            with database.session() as session:
                metrics = session.scalars(select(RiskModel.metrics)).one()
                assert "heuristic_calibration" not in metrics  # not due yet

    # What the refit must be: the heuristic's scores of the rows that ran, the
    # exploration row counted 1/0.25 = 4 times, a build per plan.
    weight = np.array([1] * 8 + [4])
    raw = heuristic_scores(
        FeatureMatrix(tests=("",) * 9, values=np.vstack([vector(t) for t in range(9)]))
    )
    failed = np.array([[fails(t, n) for t in range(9)] for n in range(every)], dtype=float)
    expected = calibration.fit(
        np.tile(np.repeat(raw, weight), every),
        np.concatenate([np.repeat(row, weight) for row in failed]),
        np.repeat(np.arange(every), int(weight.sum())),
    )
    assert expected is not None
    with database.session() as session:
        metrics = session.scalars(select(RiskModel.metrics)).one()
    assert metrics["heuristic_calibration"] == expected.as_json()
    assert metrics["calibration_refreshed_from"] == f"the outcomes of {every} plans"
    refreshed = calibration.Calibration.from_json(metrics["heuristic_calibration"])
    assert refreshed is not None
    # Riskier tests get higher probabilities, and the rates are the observed ones'.
    probabilities = refreshed.apply(raw)
    assert probabilities[0] > probabilities[8]
    assert float(np.average(probabilities, weights=weight)) == pytest.approx(
        float(np.average(failed.mean(axis=0), weights=weight)), abs=0.05
    )


def test_nothing_to_keep_a_map_in_before_the_first_training(database: Database) -> None:
    with database.session() as session:
        repository = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/app")
        assert recalibration.refresh(session, repository.id) is None
