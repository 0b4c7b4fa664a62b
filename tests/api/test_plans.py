"""GET/POST /api/v1/repos/{owner}/{name}/plans/{sha} through the FastAPI app,
on SQLite and PostgreSQL with real tokens: the contract's fields, budgets,
shards, collected tests, what is recorded on the plan, and the 4xx answers."""

from __future__ import annotations

import math
import statistics
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from scheduler.api.app import create_app
from scheduler.config import Settings
from scheduler.db import Database
from scheduler.models import Commit, Plan, Repository
from scheduler.risk import calibration
from scheduler.services import scoring
from tests.planning.data import FLAKY, NAMES, SHA, TESTS, add_commit, recorded

URL = f"/api/v1/repos/acme/app/plans/{SHA}"
CONTRACT_KEYS = {
    "plan_id",
    "commit",
    "status",
    "model_version",
    "mode",
    "budget",
    "by",
    "shard",
    "full_run",
    "full_run_reason",
    "total",
    "selected",
    "duration_selected",
    "duration_dropped",
    "expected_failures_dropped",
    "miss_probability",
    "failures_dropped_bound",
    "message",
    "tests",
}
TEST_KEYS = {"test", "rank", "probability", "selected", "reason", "duration", "rule"}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get(client: TestClient, token: str, **params: Any) -> dict[str, Any]:
    response = client.get(URL, params=params, headers=auth(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_unknown_commit_is_scored_on_the_spot(
    client: TestClient, database: Database, token: str
) -> None:
    plan = get(client, token, branch="feature")
    assert set(plan) >= CONTRACT_KEYS
    assert (plan["status"], plan["commit"], plan["mode"], plan["model_version"]) == (
        "heuristic",
        SHA,
        "order",
        None,
    )
    assert isinstance(plan["plan_id"], int)
    assert plan["total"] == plan["selected"] == len(NAMES)
    assert plan["full_run"] is False
    assert plan["message"] is None
    assert all(set(test) == TEST_KEYS for test in plan["tests"])
    assert [test["rank"] for test in plan["tests"]] == list(range(1, len(NAMES) + 1))
    assert {test["duration"] for test in plan["tests"]} == set(TESTS.values())
    # Riskiest first: the budget (none) counts tests.
    probabilities = [test["probability"] for test in plan["tests"]]
    assert probabilities == sorted(probabilities, reverse=True)
    # By duration: riskiest per second, with the median's overhead.
    timed = get(client, token, branch="feature", by="duration")
    overhead = statistics.median(test["duration"] for test in timed["tests"])
    rates = [test["probability"] / (test["duration"] + overhead) for test in timed["tests"]]
    assert rates == sorted(rates, reverse=True)
    assert rates != [test["probability"] / (test["duration"] + overhead) for test in plan["tests"]]
    [flaky] = [test for test in plan["tests"] if test["test"] == FLAKY]
    assert flaky["reason"].startswith("Last failed 3 builds ago")
    assert flaky["probability"] == max(test["probability"] for test in plan["tests"])
    with database.session() as session:
        commit = session.scalar(select(Commit).where(Commit.sha == SHA))
        assert commit is not None
        assert commit.branch == "feature"


def test_fraction_budget_lists_selected_then_dropped_and_records_it(
    client: TestClient, database: Database, token: str
) -> None:
    plan = get(client, token, mode="fraction", budget="0.25")
    assert (plan["mode"], plan["budget"], plan["by"]) == ("fraction", 0.25, "tests")
    tests = plan["tests"]
    chosen = [test for test in tests if test["selected"]]
    assert tests[: len(chosen)] == chosen  # selected first, then the dropped
    assert plan["selected"] == len(chosen) >= 2  # ceil(0.25 * 8)
    dropped = tests[len(chosen) :]
    assert all(test["rule"] == "budget" for test in dropped)
    assert all(test["reason"].startswith("Over the budget") for test in dropped)
    assert plan["duration_dropped"] == pytest.approx(sum(t["duration"] for t in dropped))
    assert plan["duration_selected"] == pytest.approx(sum(t["duration"] for t in chosen))
    assert plan["expected_failures_dropped"] == pytest.approx(
        sum(t["probability"] for t in dropped), abs=1e-5
    )
    # The chance that at least one dropped test fails, from the same probabilities.
    assert plan["miss_probability"] == pytest.approx(
        1 - math.prod(1 - t["probability"] for t in dropped), abs=1e-5
    )
    # The 95% bound on the dropped failures, from the same probabilities.
    assert plan["failures_dropped_bound"] == calibration.failures_bound(
        [t["probability"] for t in dropped]
    )
    # What the policy decided is on the plan items, to evaluate outcomes later.
    stored = recorded(database, plan["plan_id"])
    for test in tests:
        selected, propensity, rule = stored[test["test"]]
        assert (selected, rule) == (test["selected"], test["rule"])
        assert propensity == (1.0 if test["rule"] != "budget" else 0.05)
    with database.session() as session:
        policy = session.get_one(Plan, plan["plan_id"]).policy
        assert policy is not None
        assert (policy["mode"], policy["budget"], policy["tests"]) == (
            "fraction",
            0.25,
            None,
        )


def test_items_are_written_only_when_the_policy_changes(
    client: TestClient, database: Database, token: str
) -> None:
    plan = get(client, token, mode="fraction", budget="0.25")
    plan_id = plan["plan_id"]
    with database.session() as session:  # a marker the same policy must not overwrite
        session.execute(update(Plan).where(Plan.id == plan_id).values(decision=b"marker"))
    get(client, token, mode="fraction", budget="0.25", shard="1/2")  # same policy, a shard
    with database.session() as session:
        assert session.scalar(select(Plan.decision).where(Plan.id == plan_id)) == b"marker"
    get(client, token, mode="fraction", budget="0.5")
    assert {rule for _, _, rule in recorded(database, plan_id).values()} >= {"budget", "model"}


def test_shards_split_the_selection(client: TestClient, token: str) -> None:
    whole = get(client, token, mode="fraction", budget="0.75")
    chosen = [test["test"] for test in whole["tests"] if test["selected"]]
    parts = [get(client, token, mode="fraction", budget="0.75", shard=f"{i}/3") for i in (1, 2, 3)]
    listed = [[test["test"] for test in part["tests"]] for part in parts]
    # disjoint, covering
    assert sorted(name for names in listed for name in names) == sorted(chosen)
    assert all(test["selected"] for part in parts for test in part["tests"])
    assert [part["selected"] for part in parts] == [len(names) for names in listed]
    assert all(part["total"] == len(NAMES) for part in parts)
    loads = [part["duration_selected"] for part in parts]
    assert max(loads) - min(loads) <= max(TESTS.values())
    for names in listed:  # each shard in the whole plan's run order
        assert names == [name for name in chosen if name in names]


def test_collected_tests_define_the_plan_and_unknown_ones_are_new(
    client: TestClient, database: Database, token: str
) -> None:
    collected = [NAMES[0], NAMES[4], "tests/test_new.py::test_fresh"]
    plan = get(client, token, mode="fraction", budget="0", tests=collected)
    assert plan["total"] == 3
    by_name = {test["test"]: test for test in plan["tests"]}
    assert set(by_name) == set(collected)
    new = by_name["tests/test_new.py::test_fresh"]
    assert (new["selected"], new["rule"], new["duration"]) == (True, "new", None)
    assert new["reason"].startswith("New to riskrank")
    stored = recorded(database, plan["plan_id"])
    assert stored[NAMES[1]] == (None, None, None)  # not collected: no decision
    assert stored[NAMES[0]][2] in {"budget", "exploration"}


def test_post_takes_the_parameters_in_a_body(client: TestClient, token: str) -> None:
    collected = [*NAMES[:3], "tests/test_new.py::test_fresh"]
    response = client.post(
        URL,
        json={"mode": "time", "budget": 5, "shard": "1/1", "tests": collected},
        headers=auth(token),
    )
    assert response.status_code == 200, response.text
    plan = response.json()
    assert (plan["mode"], plan["budget"], plan["shard"], plan["total"]) == ("time", 5.0, "1/1", 4)
    assert plan["duration_selected"] <= 5.0 + TESTS[NAMES[2]]


def test_a_lock_file_change_runs_everything(
    client: TestClient, database: Database, repository_id: int, token: str
) -> None:
    add_commit(database, repository_id, SHA, "src/app.py", "web/yarn.lock")
    # A push stores commits and scores them in one go; here the worker is the test.
    with database.session() as session:
        commit_id = session.scalar(select(Commit.id).where(Commit.sha == SHA))
        assert commit_id is not None
        scoring.score_commit(session, commit_id)
    plan = get(client, token, mode="fraction", budget="0.1")
    assert plan["full_run"] is True
    assert plan["full_run_reason"] == "the change touches web/yarn.lock"
    assert plan["selected"] == len(NAMES)
    assert {test["rule"] for test in plan["tests"]} == {"full_run"}


def test_must_run_globs_come_from_the_repository_settings(
    client: TestClient, database: Database, repository_id: int, token: str
) -> None:
    with database.session() as session:
        session.execute(
            update(Repository)
            .where(Repository.id == repository_id)
            .values(settings={"must_run": ["tests/test_db.py::*"], "exploration_rate": 0})
        )
    plan = get(client, token, mode="fraction", budget="0")
    chosen = {test["test"]: test for test in plan["tests"] if test["selected"]}
    assert set(chosen) == {"tests/test_db.py::test_query", "tests/test_db.py::test_migrate"}
    assert {test["rule"] for test in chosen.values()} == {"must_run"}
    assert plan["exploration_rate"] == 0


def test_waits_for_the_workers_plan(
    db_url: str, redis_url: str, database: Database, repository_id: int, token: str
) -> None:
    commit_id = add_commit(database, repository_id)
    landed: list[int] = []

    def worker() -> None:
        time.sleep(0.3)
        with database.session() as session:
            plan = scoring.score_commit(session, commit_id)
            assert plan is not None
            landed.append(plan.id)

    settings = Settings(database_url=db_url, broker_url=redis_url, plan_wait_seconds=10)
    thread = threading.Thread(target=worker)
    with TestClient(create_app(settings)) as client:
        thread.start()
        started = time.monotonic()
        plan = get(client, token)
        elapsed = time.monotonic() - started
    thread.join()
    assert plan["plan_id"] == landed[0]
    assert 0.2 < elapsed < 5


def test_scores_inline_after_the_deadline(
    db_url: str, redis_url: str, database: Database, repository_id: int, token: str
) -> None:
    add_commit(database, repository_id)
    settings = Settings(database_url=db_url, broker_url=redis_url, plan_wait_seconds=0.3)
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        plan = get(client, token)
        elapsed = time.monotonic() - started
    assert plan["status"] == "heuristic"
    assert plan["plan_id"] is not None
    assert elapsed >= 0.3


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mode": "fastest"}, "mode must be one of order, time, fraction, confidence"),
        ({"mode": "fraction", "budget": "1.5"}, "a fraction budget is a share from 0 to 1"),
        ({"mode": "confidence", "budget": "2"}, "a confidence budget is a share from 0 to 1"),
        ({"mode": "time", "budget": "-3"}, "a time budget is seconds"),
        ({"mode": "time"}, "mode time needs a budget"),
        ({"mode": "time", "budget": "soon"}, "budget must be a number"),
        ({"by": "lines", "mode": "fraction", "budget": "0.5"}, "by must be one of tests, duration"),
        ({"shard": "0/4"}, "1 <= i <= n"),
        ({"shard": "5/4"}, "1 <= i <= n"),
        ({"shard": "first"}, "shard must be i/n"),
    ],
)
def test_bad_parameters_are_400_with_a_message(
    client: TestClient, token: str, params: dict[str, str], message: str
) -> None:
    response = client.get(URL, params=params, headers=auth(token))
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mode": "time", "budget": "nan"}, "budget: must be a finite number"),
        ({"mode": "time", "budget": "9" * 400}, "budget: must be a finite number"),
        ({"branch": "b" * 256}, "branch: must be at most 255 characters"),
    ],
)
def test_values_past_a_bound_are_422_with_a_message(
    client: TestClient, token: str, params: dict[str, str], message: str
) -> None:
    """The rule of scheduler.errors: a value past a bound is 422, not 400."""
    response = client.get(URL, params=params, headers=auth(token))
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_bad_bodies_are_400(client: TestClient, token: str) -> None:
    cases = [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "a JSON object"),
        (b'{"tests": "a"}', "tests must be a list"),
        (b'{"budget": true, "mode": "time"}', "budget must be a number"),
        (b'{"modes": "time"}', "unknown parameters: modes"),
    ]
    for body, message in cases:
        response = client.post(
            URL, content=body, headers={**auth(token), "Content-Type": "application/json"}
        )
        assert response.status_code == 400, body
        assert message in response.json()["detail"]


def test_tokens_are_checked_first(client: TestClient, database: Database, token: str) -> None:
    others = make_tokens_again(database)
    assert client.get(URL).status_code == 401
    assert client.get(URL, headers=auth("rr_nonsense")).status_code == 401
    assert client.get(URL, headers=auth(others["results-only"])).status_code == 403
    # Another repository's token hears what an unknown repository's does.
    foreign = client.get(URL, headers=auth(others["other"]))
    missing = client.get(f"/api/v1/repos/acme/app-x/plans/{SHA}", headers=auth(token))
    assert (foreign.status_code, missing.status_code) == (404, 404)
    assert foreign.json()["detail"] == missing.json()["detail"].replace("acme/app-x", "acme/app")
    # 401 before 400: nobody learns about parameters without a token.
    assert client.get(URL, params={"mode": "bad"}).status_code == 401
    assert client.post(URL, content=b"x" * 1000).status_code == 401


def make_tokens_again(database: Database) -> dict[str, str]:
    from scheduler.models import Provider
    from scheduler.services import repos, tokens

    with database.session() as session:
        app = repos.find_repository(session, provider=Provider.GITHUB, full_name="acme/app")
        other = repos.find_repository(session, provider=Provider.GITHUB, full_name="acme/other")
        assert app is not None
        assert other is not None
        return {
            "results-only": tokens.create_token(
                session, repository=app, scopes=(tokens.Scope.RESULTS_WRITE,), name="up2"
            ).token,
            "other": tokens.create_token(
                session, repository=other, scopes=tokens.DEFAULT_SCOPES, name="ci2"
            ).token,
        }


def test_openapi_documents_both_methods(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    operations = paths["/api/v1/repos/{owner}/{name}/plans/{sha}"]
    assert set(operations) == {"get", "post"}
    names = {parameter["name"] for parameter in operations["get"]["parameters"]}
    assert {"mode", "budget", "by", "shard", "branch", "tests"} <= names
    assert "example" in operations["post"]["requestBody"]["content"]["application/json"]
