"""A corrupt model row in the database, on SQLite and PostgreSQL: the plan
falls back to the heuristic order with everything running, and says why
(its status and its message); the worker's scoring fails with the same
reason instead of trimming on a guess."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from scheduler.db import Database
from scheduler.models import Plan, RiskModel
from scheduler.services import scoring
from tests.api.test_plans import get
from tests.planning.data import FLAKY, NAMES, add_commit, add_model


def corrupt(database: Database, model_id: int) -> None:
    """Cut the stored LightGBM text in half, as a torn write or a bad
    restore would leave it."""
    with database.session() as session:
        session.execute(
            update(RiskModel)
            .where(RiskModel.id == model_id)
            .values(model_text=func.substr(RiskModel.model_text, 1, 600))
        )


def test_a_corrupt_model_row_plans_everything_in_the_heuristic_order_marked_so(
    client: TestClient, database: Database, repository_id: int, token: str
) -> None:
    model_id = add_model(database, repository_id)
    corrupt(database, model_id)
    plan = get(client, token, mode="fraction", budget="0.3")
    assert plan["status"] == "fallback"
    assert plan["model_version"] is None
    assert plan["message"].startswith("scoring failed: UnreadableModel: the active model v1 ")
    assert "cannot be read" in plan["message"]
    # Everything runs (nothing trimmed on a guess), the one that failed
    # last first (the heuristic order), each test saying why.
    assert plan["full_run"] is True
    assert plan["total"] == plan["selected"] == len(NAMES)
    assert all(test["selected"] for test in plan["tests"])
    assert plan["tests"][0]["test"] == FLAKY
    assert all(test["reason"].startswith("Fallback: everything runs") for test in plan["tests"])
    # The model is still the active one: a rollback or a training replaces it.
    with database.session() as session:
        assert session.scalars(select(RiskModel.id)).all() == [model_id]


def test_the_workers_scoring_names_the_corrupt_model(
    database: Database, repository_id: int
) -> None:
    model_id = add_model(database, repository_id)
    corrupt(database, model_id)
    commit_id = add_commit(database, repository_id)
    cache = scoring.ModelCache()
    for _ in range(2):  # the second time from the cache's memory of the failure
        with (
            pytest.raises(scoring.UnreadableModel, match=r"active model v1 cannot be read"),
            database.session() as session,
        ):
            scoring.score_commit(session, commit_id, cache=cache)
    with database.session() as session:
        assert session.scalars(select(Plan.id)).all() == []  # nothing half-stored
    # A readable model promoted in its place serves again.
    add_model(database, repository_id)
    with database.session() as session:
        plan = scoring.score_commit(session, commit_id, cache=cache)
        assert plan is not None
        assert plan.model_id is not None
        assert plan.model_id != model_id
