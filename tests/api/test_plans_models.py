"""Plans scored by a trained model through the API, on SQLite and
PostgreSQL: a `ready` plan names its model, and which stored plan is served
once a newer model is promoted (rescored unless CI already followed it)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from scheduler.db import Database
from scheduler.models import KnownTest, Plan, PlanItem, PlanStatus
from scheduler.planning.records import Payload
from scheduler.risk.columns import HistoryColumns, LinkColumns
from scheduler.risk.features import build_features
from scheduler.services import scoring
from scheduler.services.plans.items import NEW_TEST_PROBABILITY, new_test_probability
from tests.api.test_plans import get as get_plan
from tests.planning.data import NAMES, add_commit, add_model


def get(client: TestClient, token: str, **params: Any) -> dict[str, Any]:
    body = get_plan(client, token, **params)
    assert body["message"] is None
    return body


def score_now(database: Database, repository_id: int) -> int:
    """The worker's job on a push: the commit scored, nobody has asked yet."""
    commit_id = add_commit(database, repository_id)
    with database.session() as session:
        plan = scoring.score_commit(session, commit_id, cache=scoring.ModelCache())
        assert plan is not None
        return plan.id


def test_a_ready_plan_answers_the_models_scores(
    client: TestClient, database: Database, repository_id: int, token: str
) -> None:
    model_id = add_model(database, repository_id)
    plan = get(client, token, mode="fraction", budget="0.5")
    assert (plan["status"], plan["model_version"]) == ("ready", 1)
    assert plan["total"] == len(NAMES)
    with database.session() as session:
        stored = session.get_one(Plan, plan["plan_id"])
        assert (stored.status, stored.model_id) == (PlanStatus.READY, model_id)
        scores = dict(
            session.execute(
                select(KnownTest.name, PlanItem.probability)
                .join(PlanItem, PlanItem.test_id == KnownTest.id)
                .where(PlanItem.plan_id == plan["plan_id"])
            ).all()
        )
    # The answer's probabilities are the model's stored scores, every test a
    # probability and a reason, ranks 1..n over the whole plan.
    assert {test["test"]: test["probability"] for test in plan["tests"]} == scores
    assert all(0 < test["probability"] < 1 and test["reason"] for test in plan["tests"])
    assert sorted(test["rank"] for test in plan["tests"]) == list(range(1, len(NAMES) + 1))
    assert plan["selected"] == sum(test["selected"] for test in plan["tests"]) >= len(NAMES) // 2


def test_a_plan_nobody_followed_is_rescored_by_a_newer_model(
    client: TestClient, database: Database, repository_id: int, token: str
) -> None:
    heuristic_plan = score_now(database, repository_id)
    add_model(database, repository_id)  # promoted after the push was scored
    plan = get(client, token)
    assert (plan["status"], plan["model_version"]) == ("ready", 1)
    assert plan["plan_id"] > heuristic_plan
    add_model(database, repository_id)  # v2; but CI has now followed v1's plan
    again = get(client, token, shard="1/2")
    assert (again["plan_id"], again["model_version"]) == (plan["plan_id"], 1)


def test_a_plan_ci_followed_is_kept_after_a_promotion(
    client: TestClient, database: Database, repository_id: int, token: str
) -> None:
    first = get(client, token, mode="fraction", budget="0.5", shard="1/2")
    assert first["status"] == "heuristic"
    add_model(database, repository_id)
    second = get(client, token, mode="fraction", budget="0.5", shard="2/2")
    assert (second["plan_id"], second["status"]) == (first["plan_id"], "heuristic")
    listed = {test["test"] for part in (first, second) for test in part["tests"]}
    assert len(listed) == first["selected"] + second["selected"]  # the shards still agree


def test_a_failed_rescoring_serves_the_stored_plan(
    client: TestClient, database: Database, repository_id: int, token: str
) -> None:
    stored = score_now(database, repository_id)
    add_model(database, repository_id, text="not a model")
    plan = get(client, token)
    assert (plan["plan_id"], plan["status"], plan["model_version"]) == (stored, "heuristic", None)
    with database.session() as session:
        assert session.scalars(select(Plan.id)).all() == [stored]  # nothing half-stored


def test_a_collected_test_never_seen_gets_the_repositorys_failure_rate_of_new_tests(
    client: TestClient, database: Database, repository_id: int, token: str
) -> None:
    add_model(database, repository_id)
    fresh = "tests/test_new.py::test_fresh"
    plan = get(client, token, tests=[NAMES[0], fresh])
    assert (plan["status"], plan["model_version"]) == ("ready", 1)
    by_name = {test["test"]: test for test in plan["tests"]}
    # A test new to riskrank has nothing of its own to predict from: its
    # probability is the repository's observed failure rate of new tests
    # (issue 13), computed again here from the stored history.
    with database.session() as session:
        stored = session.get_one(Plan, plan["plan_id"])
        scores = scoring.score_tests(
            session,
            repository_id=repository_id,
            commit_id=stored.commit_id,
            at=stored.created_at,
            cache=scoring.ModelCache(),
        )
    rate = float(scores.matrix.column("new_test_rate")[0])
    unseen = build_features(
        HistoryColumns.unseen([""]),
        scores.change,
        LinkColumns.empty(),
        at=stored.created_at,
        new_rate=rate,
    )
    assert float(unseen.column("new_test_rate")[0]) == pytest.approx(rate)
    assert 0.0 < rate < 1.0
    assert by_name[fresh]["probability"] == pytest.approx(rate)
    assert by_name[fresh]["probability"] != pytest.approx(NEW_TEST_PROBABILITY)
    # A plan stored before this was kept answers the heuristic's.
    payload = Payload.decode(
        Payload.build(
            test_id=[1],
            names=["a"],
            probability=np.array([0.5]),
            reasons=[None],
            own_file_changed=np.array([False]),
            duration=np.array([1.0]),
            builds_since_failure=np.array([np.nan]),
            runs=np.array([3]),
            recent=["P"],
        ).encode()
    )
    assert new_test_probability(payload) == NEW_TEST_PROBABILITY
