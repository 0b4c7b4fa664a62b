"""No upload step: a signed `workflow_run` (the real sample) and a finished
Pipeline Hook end in executions in PostgreSQL through a real `riskrank
worker` on Redis, pulling from a local server that answers like GitHub's and
GitLab's APIs, throttles (429 with Retry-After, 403 with the rate limit's
reset), fails (502), answers slower than the timeout (the event keeps its
error and beat's sweeper tries again) or refuses (401: the event fails with
the reason, and stays)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from scheduler.api.app import create_app
from scheduler.config import Settings
from scheduler.db import Database
from scheduler.models import Commit, EventStatus, Execution, KnownTest, Provider, SuiteRun
from tests.e2e.conftest import Start, clean_env, deliver, event, for_repository, provider_database
from tests.fake_provider import TOKEN, Answer, FakeProvider, json_answer, zip_of
from tests.helpers import sample, wait_for

pytestmark = pytest.mark.slow

RUN = "/repos/octo-org/octo-repo/actions/runs/289782451/artifacts"
JOBS = "/repos/octo-org/octo-repo/actions/runs/289782451/attempts/1/jobs"
DENIED = "/repos/octo-org/denied/actions/runs/289782451/artifacts"
PIPELINE = "/projects/23680558/pipelines/384095584/test_report"
GITHUB_SHA = "3484a3fb816e0859fd6e1cea078d76385ff50625"
GITLAB_SHA = "ee58e259da263ecb4c1f0129be7aef8cfd4dedd6"

UNIT = b"""<testsuite name="unit">
<testcase classname="tests.test_unit" name="test_a" time="0.1"/>
<testcase classname="tests.test_unit" name="test_b" time="0.2"><failure>boom</failure></testcase>
</testsuite>"""
API = b"""<testsuites><testsuite name="api">
<testcase classname="tests.test_api" name="test_get" time="0.3"/>
</testsuite></testsuites>"""


@pytest.fixture
def pg(postgres_url: str, server: FakeProvider) -> Iterator[Database]:
    yield from provider_database(
        postgres_url,
        server.url,
        [
            (Provider.GITHUB, "octo-org/octo-repo"),
            (Provider.GITHUB, "octo-org/denied"),
            (Provider.GITLAB, "redhat/centos-stream/rpms/luksmeta"),
        ],
    )


def script(server: FakeProvider) -> None:
    page2 = f"{RUN}?per_page=100&page=2"
    artifact = {
        "id": 11,
        "name": "test-results",
        "size_in_bytes": 300,
        "expired": False,
        "archive_download_url": "{base}/repos/octo-org/octo-repo/actions/artifacts/11/zip",
    }
    server.on(
        f"{RUN}?per_page=100",
        json_answer({"message": "slow down"}, 429, **{"Retry-After": "1"}),
        json_answer(
            {"total_count": 2, "artifacts": [{**artifact, "id": 10, "name": "dist"}]},
            Link=f'<{{base}}{page2}>; rel="next"',
        ),
    )
    server.on(page2, Answer(502), json_answer({"total_count": 2, "artifacts": [artifact]}))
    server.on(
        "/repos/octo-org/octo-repo/actions/artifacts/11/zip",
        json_answer(
            {"message": "API rate limit exceeded"},
            403,
            **{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 1)},
        ),
        # To another host (localhost is this server, under another name), as
        # GitHub's storage is: the token is not sent there.
        Answer(
            302,
            headers={
                "Location": server.url.replace("127.0.0.1", "localhost") + "/storage/11?sig=x"
            },
        ),
    )
    server.on("/storage/11", Answer(200, zip_of({"unit/junit.xml": UNIT, "api/TEST-api.xml": API})))
    # The run's jobs and their conclusions, after a 502 tried again.
    jobs = [{"name": "tests", "conclusion": "failure"}, {"name": "lint", "conclusion": "success"}]
    server.on(JOBS, Answer(502), json_answer({"total_count": 2, "jobs": jobs}))
    server.on(DENIED, json_answer({"message": "Bad credentials"}, 401))
    report = {
        "total_count": 1,
        "test_suites": [
            {"name": "t", "test_cases": [{"status": "success", "name": "works", "classname": "c"}]}
        ],
    }
    # Slower than the worker's read timeout, twice: the first pull gives up.
    slow = Answer(200, json.dumps(report).encode(), delay=1.0)
    server.on(PIPELINE, slow, slow, json_answer(report))


def executions(database: Database, sha: str) -> list[tuple[str, str]]:
    with database.session() as session:
        rows = session.execute(
            select(KnownTest.name, Execution.outcome)
            .join(Execution, Execution.test_id == KnownTest.id)
            .join(SuiteRun, SuiteRun.id == Execution.run_id)
            .join(Commit, Commit.id == SuiteRun.commit_id)
            .where(Commit.sha == sha)
            .order_by(KnownTest.name)
        )
        return [(name, outcome.value) for name, outcome in rows]


def test_workflow_run_and_pipeline_hook_end_in_executions_through_a_real_worker(
    pg: Database,
    postgres_url: str,
    redis_url: str,
    server: FakeProvider,
    start: Start,
    tmp_path: Path,
    github_samples: Path,
    gitlab_samples: Path,
) -> None:
    script(server)
    env = clean_env(
        RISKRANK_DATABASE_URL=postgres_url,
        RISKRANK_BROKER_URL=redis_url,
        RISKRANK_SWEEP_INTERVAL_SECONDS="1",
        RISKRANK_SWEEP_MIN_AGE_SECONDS="1",
        RISKRANK_BEAT_SCHEDULE_FILE=str(tmp_path / "beat-schedule"),
        RISKRANK_PROVIDER_READ_TIMEOUT_SECONDS="0.5",
        RISKRANK_PROVIDER_MAX_ATTEMPTS="2",
        RISKRANK_PROVIDER_BACKOFF_SECONDS="0.01",
        RISKRANK_PROVIDER_TOTAL_SECONDS="10",
    )
    worker = start("worker", "--concurrency", "1", env=env)
    beat = start("beat", env=env)

    settings = Settings(database_url=postgres_url, broker_url=redis_url)
    run = sample(github_samples, "workflow_run-completed-success.json")
    document, denied = for_repository(run, "octo-org/denied")
    pipeline = sample(gitlab_samples, "pipeline-hook-mr-failed.json")
    with TestClient(create_app(settings)) as client:
        ids = deliver(
            client, github=("workflow_run", [run, denied]), gitlab=("Pipeline Hook", pipeline)
        )
    github_event, denied_event, gitlab_event = ids

    def logs() -> str:
        return f"worker:\n{worker.output()}\nbeat:\n{beat.output()}"

    def settled() -> bool:
        return all(event(pg, i).status is not EventStatus.PENDING for i in ids) and bool(
            executions(pg, GITHUB_SHA) and executions(pg, GITLAB_SHA)
        )

    wait_for(settled, timeout=120, what=f"the three events and their runs; {logs()}")

    # Throttled (429, 403 with its reset) and a 502, all tried again in the pull.
    assert event(pg, github_event).status is EventStatus.HANDLED
    assert event(pg, github_event).attempts == 1
    assert event(pg, github_event).error is None
    assert event(pg, github_event).summary == {
        "jobs": [
            {"name": "tests", "conclusion": "failure"},
            {"name": "lint", "conclusion": "success"},
        ]
    }
    wait_for(lambda: len(executions(pg, GITHUB_SHA)) == 3, timeout=60, what=f"ingestion; {logs()}")
    assert executions(pg, GITHUB_SHA) == [
        ("tests.test_api::test_get", "passed"),
        ("tests.test_unit::test_a", "passed"),
        ("tests.test_unit::test_b", "failed"),
    ]
    assert "Authorization" not in server.requests_to("/storage/11")[0].headers

    # Slower than the timeout twice: the first pull gave up with the error
    # recorded, the sweeper queued the event again, the second pull brought it.
    handled = event(pg, gitlab_event)
    assert handled.status is EventStatus.HANDLED
    assert handled.attempts == 2
    assert len(server.requests_to(PIPELINE)) == 3
    assert executions(pg, GITLAB_SHA) == [("c::works", "passed")]

    # A refusal is not tried again: the event fails with the reason, and stays.
    failed = event(pg, denied_event)
    assert failed.status is EventStatus.FAILED
    assert failed.error is not None
    assert "HTTP 401" in failed.error
    assert failed.payload == document
    assert len(server.requests_to(DENIED)) == 1

    assert TOKEN not in worker.output()
    assert worker.popen.poll() is None, logs()
