"""Commit statuses (off by default, per repository), on both databases: the
first time CI follows a plan its status is queued; the task's body posts a
one-line summary to a local server answering like GitHub's API, and after
the outcomes the same status with the failures caught."""

from __future__ import annotations

import json
import math

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import update

from scheduler.config import Settings
from scheduler.db import Database
from scheduler.models import Plan, Repository
from scheduler.providers_api import gitlab as gitlab_api
from scheduler.providers_api.http import HttpSettings, ProviderApiError
from scheduler.queue import STATUSES_POST, create_celery
from scheduler.services import provider_access, statuses, tokens
from scheduler.services.statuses import PlanSummary
from tests.fake_provider import FakeProvider, json_answer
from tests.helpers import queued_tasks
from tests.planning.data import SHA

URL = f"/api/v1/repos/acme/app/plans/{SHA}"
TOKEN = "ghp_StatusTestToken0123456789"
FAST = HttpSettings(read_timeout=2, max_attempts=2, backoff_seconds=0.01, total_seconds=10)
STATUS_PATH = f"/repos/acme/app/statuses/{SHA}"


def enable(database: Database, url: str, *, on: bool = True) -> None:
    with database.session() as session:
        repository = session.query(Repository).filter_by(slug="acme/app").one()
        provider_access.update_access(repository, token=TOKEN, api_url=url, commit_status=on)


def follow(client: TestClient, token: str) -> dict[str, object]:
    response = client.get(
        URL,
        params={"mode": "fraction", "budget": "0.25"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    plan: dict[str, object] = response.json()
    return plan


def expected_line(plan: dict[str, object]) -> str:
    saved = float(plan["duration_dropped"])  # type: ignore[arg-type]
    miss = 100 * float(plan["miss_probability"])  # type: ignore[arg-type]
    risk = f"{miss:.0f}%" if miss >= 10 else f"{miss:.1f}%"
    return (
        f"riskrank: {plan['selected']} of {plan['total']} tests selected, "
        f"~{round(saved)} s saved, miss risk {risk}"
    )


def test_a_followed_plan_posts_its_summary_then_its_outcome(
    client: TestClient,
    database: Database,
    redis_server: redis.Redis,
    server: FakeProvider,
    token: str,
) -> None:
    enable(database, server.url)
    server.on(STATUS_PATH, json_answer({"id": 1, "state": "success"}, 201))
    plan = follow(client, token)
    plan_id = plan["plan_id"]
    assert (plan["selected"], plan["total"]) == (2, 8)
    assert queued_tasks(redis_server) == [(STATUSES_POST, [plan_id])]
    # The same policy again: the decision is not new, nothing is queued again.
    follow(client, token)
    assert queued_tasks(redis_server) == [(STATUSES_POST, [plan_id])]

    with database.session() as session:
        job = statuses.status_job(session, int(plan_id))  # type: ignore[arg-type]
    assert job is not None
    assert TOKEN not in repr(job)
    assert job.description == expected_line(plan)
    statuses.post(job, http=FAST)
    [seen] = server.requests_to(STATUS_PATH)
    assert (seen.method, seen.headers["Authorization"]) == ("POST", f"Bearer {TOKEN}")
    assert json.loads(seen.body) == {
        "state": "success",
        "description": expected_line(plan),
        "context": "riskrank",
    }

    with database.session() as session:
        session.execute(
            update(Plan)
            .where(Plan.id == plan_id)
            .values(evaluation={"failures": 2, "failures_caught": 1})
        )
    with database.session() as session:
        job = statuses.status_job(session, int(plan_id))  # type: ignore[arg-type]
    assert job is not None
    saved = round(float(plan["duration_dropped"]))  # type: ignore[arg-type]
    assert job.description == (
        f"riskrank: 2 of 8 tests selected, ~{saved} s saved; caught 1 of 2 failures"
    )


def test_statuses_are_off_by_default_and_without_a_token(
    client: TestClient,
    database: Database,
    redis_server: redis.Redis,
    server: FakeProvider,
    token: str,
) -> None:
    enable(database, server.url, on=False)
    plan = follow(client, token)
    assert queued_tasks(redis_server) == []
    with database.session() as session:
        assert statuses.status_job(session, int(plan["plan_id"])) is None  # type: ignore[arg-type]
        repository = session.query(Repository).filter_by(slug="acme/app").one()
        provider_access.update_access(repository, clear_token=True, commit_status=True)
    with database.session() as session:
        assert statuses.status_job(session, int(plan["plan_id"])) is None  # type: ignore[arg-type]


def test_a_refused_status_is_an_error_naming_the_call(
    client: TestClient, database: Database, server: FakeProvider, token: str
) -> None:
    enable(database, server.url)
    server.on(STATUS_PATH, json_answer({"message": "Resource not accessible"}, 403))
    plan = follow(client, token)
    with database.session() as session:
        job = statuses.status_job(session, int(plan["plan_id"]))  # type: ignore[arg-type]
    assert job is not None
    with pytest.raises(ProviderApiError) as raised:
        statuses.post(job, http=FAST)
    host = server.url.removeprefix("http://")
    assert raised.value.message == f"POST {host}{STATUS_PATH}: HTTP 403"


def test_gitlab_statuses_name_the_project_by_its_path(server: FakeProvider) -> None:
    path = f"/projects/group%2Fsub%2Fapp/statuses/{SHA}"
    server.on(path, json_answer({"id": 7}, 201))
    with gitlab_api.client(server.url, "glpat-x", FAST) as api:
        gitlab_api.post_status(
            api,
            gitlab_api.project_ref(None, "group/sub/app"),
            SHA,
            state="success",
            description="riskrank: 1 of 2 tests selected",
            context="riskrank",
        )
    [seen] = server.requests_to(path)
    assert seen.headers["PRIVATE-TOKEN"] == "glpat-x"
    assert json.loads(seen.body) == {
        "state": "success",
        "name": "riskrank",
        "description": "riskrank: 1 of 2 tests selected",
    }


@pytest.mark.parametrize(
    ("summary", "line"),
    [
        (PlanSummary(500, 500, 0.0, 0.0), "500 of 500 tests selected, ~0 s saved, miss risk 0%"),
        (
            PlanSummary(500, 120, 845.0, 0.034),
            "120 of 500 tests selected, ~14 min saved, miss risk 3.4%",
        ),
        (
            PlanSummary(500, 120, 9000.0, 0.25, failures=3, caught=3),
            "120 of 500 tests selected, ~2.5 h saved; caught 3 of 3 failures",
        ),
        (
            PlanSummary(10, 4, 61.4, 0.5, failures=0, caught=0),
            "4 of 10 tests selected, ~61 s saved; no failure",
        ),
    ],
)
def test_the_summary_line(summary: PlanSummary, line: str) -> None:
    assert summary.line() == line
    assert len(f"riskrank: {summary.line()}") <= 140
    assert not math.isnan(summary.miss_probability)


def test_the_outcome_status_is_queued_by_the_ingestion_and_posted_by_the_worker(
    client: TestClient,
    database: Database,
    settings: Settings,
    redis_server: redis.Redis,
    server: FakeProvider,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker's task bodies, in this process: the followed plan's report
    uploaded with its plan id is ingested (workers.runs.ingest), which
    queues the plan's status again; the status task posts it with the
    failures caught."""
    from scheduler.config import get_settings
    from workers import runs as run_tasks
    from workers import statuses as status_tasks
    from workers.common import database_of

    enable(database, server.url)
    server.on(STATUS_PATH, json_answer({"id": 1, "state": "success"}, 201))
    plan = follow(client, token)
    selected = [test["test"] for test in plan["tests"] if test["selected"]]  # type: ignore[attr-defined]
    assert len(selected) == 2
    with database.session() as session:
        repository = session.query(Repository).filter_by(slug="acme/app").one()
        upload_token = tokens.create_token(
            session, repository=repository, scopes=(tokens.Scope.RESULTS_WRITE,), name="ci-up"
        ).token
    cases = "".join(
        f'<testcase classname="{name.split("::")[0][:-3].replace("/", ".")}" '
        f'name="{name.split("::")[1]}" file="{name.split("::")[0]}" time="1">'
        + ("<failure>boom</failure>" if number == 0 else "")
        + "</testcase>"
        for number, name in enumerate(selected)
    )
    response = client.post(
        "/api/v1/repos/acme/app/runs",
        params={"commit": SHA, "plan_id": plan["plan_id"]},
        content=f'<testsuite name="s">{cases}</testsuite>'.encode(),
        headers={"Content-Type": "application/xml", "Authorization": f"Bearer {upload_token}"},
    )
    assert response.status_code == 202, response.text
    redis_server.flushdb()

    for name, value in {
        "RISKRANK_DATABASE_URL": settings.database_url,
        "RISKRANK_BROKER_URL": settings.broker_url,
        "RISKRANK_PROVIDER_MAX_ATTEMPTS": "2",
        "RISKRANK_PROVIDER_BACKOFF_SECONDS": "0.01",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    # The worker's Celery app is configured once per process, as it starts:
    # here, as a worker started with the test's settings has it.
    monkeypatch.setattr(run_tasks, "celery_app", create_celery(settings))
    try:
        assert run_tasks.ingest(response.json()["run_id"]) == "ingested"
        assert queued_tasks(redis_server) == [(STATUSES_POST, [plan["plan_id"]])]
        saved = round(float(plan["duration_dropped"]))  # type: ignore[arg-type]
        line = f"riskrank: 2 of 8 tests selected, ~{saved} s saved; caught 1 of 1 failures"
        assert status_tasks.post(plan["plan_id"]) == line
    finally:
        database_of(get_settings()).dispose()
        get_settings.cache_clear()
    [seen] = server.requests_to(STATUS_PATH)
    assert json.loads(seen.body) == {"state": "success", "description": line, "context": "riskrank"}
