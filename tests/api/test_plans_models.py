"""Plans scored by a trained model through the API, on SQLite and
PostgreSQL: a `ready` plan names its model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from scheduler.api.app import create_app
from scheduler.config import Settings
from scheduler.db import Database
from scheduler.models import KnownTest, Plan, PlanItem, PlanStatus
from tests.planning.data import NAMES, SHA, add_model, make_repository, make_tokens

URL = f"/api/v1/repos/acme/app/plans/{SHA}"


@pytest.fixture
def repository_id(database: Database) -> int:
    return make_repository(database)


@pytest.fixture
def token(database: Database, repository_id: int) -> str:
    return make_tokens(database)["plans"]


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def get(client: TestClient, token: str, **params: Any) -> dict[str, Any]:
    response = client.get(URL, params=params, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["message"] is None
    return body


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
