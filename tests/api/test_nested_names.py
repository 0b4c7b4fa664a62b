"""A GitLab project in nested groups (group/sub/name) uses the same API as
any repository: its outcomes go in and its plans come out under
/api/v1/repos/group/sub/name/..."""

from __future__ import annotations

import redis
from fastapi.testclient import TestClient
from sqlalchemy import select

from scheduler.db import Database
from scheduler.models import Commit, Provider, SuiteRun
from scheduler.queue import RUNS_INGEST
from scheduler.services import repos, tokens
from tests.helpers import queued_tasks

SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
REPORT = b"""<testsuite name="s"><testcase classname="C" name="a"/>
<testcase classname="C" name="b"><failure message="no"/></testcase></testsuite>"""


def test_a_nested_gitlab_project_reports_and_asks_for_plans(
    client: TestClient, database: Database, redis_server: redis.Redis
) -> None:
    with database.session() as session:
        nested = repos.add_repository(
            session, provider=Provider.GITLAB, full_name="platform/backend/api"
        )
        repos.add_repository(session, provider=Provider.GITLAB, full_name="backend/api")
        token = tokens.create_token(
            session, repository=nested, scopes=tokens.DEFAULT_SCOPES, name="ci"
        ).token
        nested_id = nested.id
    auth = {"Authorization": f"Bearer {token}"}

    sent = client.post(
        f"/api/v1/repos/platform/backend/api/runs?commit={SHA}",
        content=REPORT,
        headers=auth | {"Content-Type": "application/xml"},
    )
    assert sent.status_code == 202, sent.text
    with database.session() as session:
        run = session.scalars(select(SuiteRun)).one()
        assert run.repository_id == nested_id
        assert session.scalars(select(Commit.sha)).all() == [SHA]
    assert queued_tasks(redis_server) == [(RUNS_INGEST, [sent.json()["run_id"]])]

    plan = client.get(f"/api/v1/repos/platform/backend/api/plans/{SHA}", headers=auth)
    assert plan.status_code == 200, plan.text
    # The report waits for a worker (none runs here): no test is known yet.
    assert (plan.json()["status"], plan.json()["run_all"]) == ("no_tests", True)
    # The token is the nested project's: the project one level up is another one.
    other = client.get(f"/api/v1/repos/backend/api/plans/{SHA}", headers=auth)
    assert other.status_code == 404, other.text
