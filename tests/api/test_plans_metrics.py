"""The plan API's Prometheus metrics: answers counted by status, and their
time, as /metrics shows them after real requests."""

from __future__ import annotations

from fastapi.testclient import TestClient

from scheduler.api.app import create_app
from scheduler.config import Settings
from scheduler.db import Database
from tests.planning.data import SHA, add_model, make_repository, make_tokens

URL = f"/api/v1/repos/acme/app/plans/{SHA}"


def sample(client: TestClient, name: str) -> float:
    """A sample's value on /metrics (0 before the first observation)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    for line in response.text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_plans_are_counted_by_status_and_timed(database: Database, settings: Settings) -> None:
    repository_id = make_repository(database)
    headers = {"Authorization": f"Bearer {make_tokens(database)['plans']}"}
    heuristic = 'riskrank_plans_served_total{status="heuristic"}'
    ready = 'riskrank_plans_served_total{status="ready"}'
    with TestClient(create_app(settings)) as client:
        before = {
            name: sample(client, name) for name in (heuristic, ready, "riskrank_plan_seconds_count")
        }
        seconds_before = sample(client, "riskrank_plan_seconds_sum")
        assert client.get(URL, params={"mode": "order"}, headers=headers).status_code == 200
        assert client.get(URL, params={"shard": "1/2"}, headers=headers).status_code == 200
        add_model(database, repository_id)
        other = f"/api/v1/repos/acme/app/plans/{'cd' * 20}"
        assert client.get(other, headers=headers).json()["status"] == "ready"
        # A bad parameter is a 400, not a plan: not counted.
        assert client.get(URL, params={"mode": "never"}, headers=headers).status_code == 400
        assert sample(client, heuristic) == before[heuristic] + 2
        assert sample(client, ready) == before[ready] + 1
        assert sample(client, "riskrank_plan_seconds_count") == (
            before["riskrank_plan_seconds_count"] + 3
        )
        assert sample(client, "riskrank_plan_seconds_sum") > seconds_before
