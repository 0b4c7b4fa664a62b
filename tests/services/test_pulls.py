"""Results pulled from the CI, on both databases: a completed workflow_run
(the real sample) or a finished Pipeline Hook is stored and queued, the
provider (a local server answering like GitHub's and GitLab's APIs) is asked
for the run's reports, and they become runs and executions as an uploaded
report does, once however often they are pulled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from scheduler.config import Settings
from scheduler.db import Database
from scheduler.ingest.artifacts import ZipLimits
from scheduler.models import CiEvent, Commit, EventStatus, Execution, Provider, SuiteRun
from scheduler.providers_api.http import HttpSettings
from scheduler.queue import EVENTS_PROCESS, RUNS_INGEST, create_celery
from scheduler.services import provider_access, pulls, repos, runs
from tests.fake_provider import TOKEN, Answer, FakeProvider, json_answer, register, zip_of
from tests.helpers import github_headers, gitlab_headers, queued_tasks, sample

RUN_ID = 289782451
HEAD = "3484a3fb816e0859fd6e1cea078d76385ff50625"
ARTIFACTS = f"/repos/octo-org/octo-repo/actions/runs/{RUN_ID}/artifacts"
JOBS = f"/repos/octo-org/octo-repo/actions/runs/{RUN_ID}/attempts/1/jobs"
FAST = HttpSettings(read_timeout=2, max_attempts=3, backoff_seconds=0.01, total_seconds=10)


def suite(name: str, failing: str | None = None) -> bytes:
    cases = "".join(
        f'<testcase classname="tests.test_{name}" name="test_{case}" time="0.1">'
        + ("<failure>boom</failure>" if case == failing else "")
        + "</testcase>"
        for case in ("a", "b", "c")
    )
    return f'<testsuite name="{name}">{cases}</testsuite>'.encode()


ZIP = zip_of(
    {
        "py3.12/junit-unit.xml": suite("unit", failing="b"),
        "py3.12/junit-api.xml": suite("api"),
        "py3.12/coverage.xml": b'<coverage version="7"/>',
    }
)


def job(name: str, conclusion: str | None) -> dict[str, Any]:
    return {
        "id": abs(hash(name)) % 10**9,
        "run_id": RUN_ID,
        "name": name,
        "status": "completed" if conclusion else "in_progress",
        "conclusion": conclusion,
        "check_run_url": "{base}/repos/octo-org/octo-repo/check-runs/1",
    }


def script_jobs(server: FakeProvider, *jobs: dict[str, Any]) -> None:
    """The run's jobs over two pages (the last one alone on the second)."""
    page2 = f"{JOBS}?per_page=100&page=2"
    server.on(
        f"{JOBS}?per_page=100",
        json_answer(
            {"total_count": len(jobs), "jobs": list(jobs[:-1])},
            Link=f'<{{base}}{page2}>; rel="next"',
        ),
    )
    server.on(page2, json_answer({"total_count": len(jobs), "jobs": list(jobs[-1:])}))


def script_github(server: FakeProvider) -> None:
    def listed(number: int, name: str) -> dict[str, Any]:
        return {
            "id": number,
            "name": name,
            "size_in_bytes": len(ZIP),
            "expired": False,
            "archive_download_url": "{base}"
            + f"/repos/octo-org/octo-repo/actions/artifacts/{number}/zip",
        }

    page2 = f"{ARTIFACTS}?per_page=100&page=2"
    server.on(
        f"{ARTIFACTS}?per_page=100",
        json_answer(
            {"total_count": 3, "artifacts": [listed(1, "test-results-3.12"), listed(2, "dist")]},
            Link=f'<{{base}}{page2}>; rel="next"',
        ),
    )
    # The same reports in a second artifact, listed on the next page: stored once.
    server.on(page2, json_answer({"total_count": 3, "artifacts": [listed(3, "JUnit-copy")]}))
    for number in (1, 3):
        path = f"/repos/octo-org/octo-repo/actions/artifacts/{number}/zip"
        server.on(path, Answer(302, headers={"Location": "{base}/blobs/" + str(number)}))
        server.on(f"/blobs/{number}", Answer(200, ZIP, {"Content-Type": "application/zip"}))
    script_jobs(server, job("test (3.12)", "failure"), job("lint", "success"))


def pull(database: Database, settings: Settings, event_id: int) -> EventStatus | None:
    """The worker's three steps, here in the test's process."""
    with database.session() as session:
        job = pulls.pull_job(session, event_id)
    assert job is not None
    assert TOKEN not in repr(job)
    reports = pulls.fetch_reports(job, http=FAST, limits=ZipLimits())
    jobs = pulls.fetch_jobs(job, http=FAST)
    with database.session() as session:
        return pulls.store_reports(session, create_celery(settings), job, reports, jobs)


def ingest_all(database: Database) -> None:
    with database.session() as session:
        ids = list(session.scalars(select(SuiteRun.id).order_by(SuiteRun.id)))
    for run_id in ids:
        with database.session() as session:
            runs.ingest_run(session, run_id)


def executions(database: Database) -> list[tuple[str, str, str]]:
    from scheduler.models import KnownTest

    with database.session() as session:
        rows = session.execute(
            select(Commit.sha, KnownTest.name, Execution.outcome)
            .join(SuiteRun, SuiteRun.id == Execution.run_id)
            .join(Commit, Commit.id == SuiteRun.commit_id)
            .join(KnownTest, KnownTest.id == Execution.test_id)
            .order_by(KnownTest.name)
        )
        return [(sha, name, outcome.value) for sha, name, outcome in rows]


def test_a_completed_workflow_run_becomes_executions_once(
    client: TestClient,
    database: Database,
    settings: Settings,
    redis_server: redis.Redis,
    server: FakeProvider,
    github_samples: Path,
) -> None:
    register(database, Provider.GITHUB, "octo-org/octo-repo", server.url)
    script_github(server)
    body = sample(github_samples, "workflow_run-completed-success.json")
    response = client.post(
        "/webhooks/github", content=body, headers=github_headers(body, event="workflow_run")
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    event_id = response.json()["event_id"]
    assert queued_tasks(redis_server) == [(EVENTS_PROCESS, [event_id])]
    redis_server.flushdb()

    assert pull(database, settings, event_id) is EventStatus.HANDLED
    with database.session() as session:
        stored = session.execute(
            select(SuiteRun.id, SuiteRun.run_key, SuiteRun.source).order_by(SuiteRun.id)
        ).all()
        commit = session.execute(select(Commit.sha, Commit.branch)).one()
    # Two JUnit files in the artifact (coverage.xml is not one), the copy
    # in the second artifact stored once.
    assert [(key, source.value) for _, key, source in stored] == [
        (f"github-run-{RUN_ID}-attempt-1", "junit"),
        (f"github-run-{RUN_ID}-attempt-1", "junit"),
    ]
    assert tuple(commit) == (HEAD, "master")
    assert sorted(queued_tasks(redis_server)) == [
        (RUNS_INGEST, [run_id]) for run_id, _, _ in stored
    ]
    # The jobs of the run's attempt, over two pages, kept on the event; a
    # failed job with reports says nothing more (its outcomes are in them).
    with database.session() as session:
        event = session.get_one(CiEvent, event_id)
        assert event.summary == {
            "jobs": [
                {"name": "test (3.12)", "conclusion": "failure"},
                {"name": "lint", "conclusion": "success"},
            ]
        }
        assert event.error is None
    assert len(server.requests_to(JOBS)) == 2
    # The download's redirect went to the blob without being asked twice.
    assert len(server.requests_to("/blobs/1")) == 1
    assert all(
        seen.headers.get("Authorization") == f"Bearer {TOKEN}"
        for seen in server.seen
        if "/repos/" in seen.path
    )

    ingest_all(database)
    assert executions(database) == [
        (HEAD, f"tests.test_{suite_name}::test_{case}", outcome)
        for suite_name, case, outcome in [
            ("api", "a", "passed"),
            ("api", "b", "passed"),
            ("api", "c", "passed"),
            ("unit", "a", "passed"),
            ("unit", "b", "failed"),
            ("unit", "c", "passed"),
        ]
    ]

    # The same run delivered again (GitHub's redelivery has a new id): the
    # reports are pulled again and stored once.
    again = client.post(
        "/webhooks/github", content=body, headers=github_headers(body, event="workflow_run")
    )
    assert again.json()["status"] == "queued"
    assert pull(database, settings, again.json()["event_id"]) is EventStatus.HANDLED
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(SuiteRun)) == 2
    # A handled event is left alone.
    with database.session() as session:
        assert pulls.pull_job(session, event_id) is None


def test_workflow_runs_are_dropped_when_nothing_would_be_pulled(
    client: TestClient,
    database: Database,
    redis_server: redis.Redis,
    server: FakeProvider,
    github_samples: Path,
) -> None:
    register(database, Provider.GITHUB, "octo-org/octo-repo", None)  # no token
    body = sample(github_samples, "workflow_run-completed-success.json")
    headers = github_headers(body, event="workflow_run")
    assert client.post("/webhooks/github", content=body, headers=headers).json() == {
        "status": "ignored",
        "event_id": None,
    }
    with database.session() as session:
        repository = repos.resolve_repository(session, full_name="octo-org/octo-repo")
        provider_access.update_access(repository, token=TOKEN, api_url=server.url)
    document = json.loads(body)
    document["action"] = "in_progress"
    running = json.dumps(document).encode()
    response = client.post(
        "/webhooks/github", content=running, headers=github_headers(running, event="workflow_run")
    )
    assert response.json() == {"status": "ignored", "event_id": None}
    # A completed run with no commit is refused before anything is stored.
    document["action"] = "completed"
    document["workflow_run"]["head_sha"] = None
    broken = json.dumps(document).encode()
    refused = client.post(
        "/webhooks/github", content=broken, headers=github_headers(broken, event="workflow_run")
    )
    assert refused.status_code == 400
    assert "head_sha" in refused.json()["detail"]
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(CiEvent)) == 0
    assert queued_tasks(redis_server) == []
    assert server.seen == []


def test_a_failed_pull_keeps_the_event_pending_for_another_try(
    client: TestClient,
    database: Database,
    settings: Settings,
    server: FakeProvider,
    github_samples: Path,
) -> None:
    register(database, Provider.GITHUB, "octo-org/octo-repo", server.url)
    server.on(ARTIFACTS, Answer(502))
    body = sample(github_samples, "workflow_run-completed-success.json")
    response = client.post(
        "/webhooks/github", content=body, headers=github_headers(body, event="workflow_run")
    )
    event_id = response.json()["event_id"]
    with pytest.raises(pulls.PullFailed) as raised:
        pull(database, settings, event_id)
    assert raised.value.retryable
    assert len(server.requests_to(ARTIFACTS)) == FAST.max_attempts
    with database.session() as session:
        event = session.get_one(CiEvent, event_id)
        assert event.status is EventStatus.PENDING  # nothing stored, nothing lost

    script_github(server)
    assert pull(database, settings, event_id) is EventStatus.HANDLED


def test_a_failed_job_that_left_no_report_is_said_and_no_outcome_is_made_up(
    client: TestClient,
    database: Database,
    settings: Settings,
    server: FakeProvider,
    github_samples: Path,
) -> None:
    register(database, Provider.GITHUB, "octo-org/octo-repo", server.url)
    # No JUnit artifact: the tests never ran (the build broke before them).
    server.on(ARTIFACTS, json_answer({"total_count": 0, "artifacts": []}))
    script_jobs(server, job("build", "failure"), job("docs", "success"), job("test", "timed_out"))
    body = sample(github_samples, "workflow_run-completed-success.json")
    response = client.post(
        "/webhooks/github", content=body, headers=github_headers(body, event="workflow_run")
    )
    event_id = response.json()["event_id"]
    assert pull(database, settings, event_id) is EventStatus.HANDLED
    with database.session() as session:
        event = session.get_one(CiEvent, event_id)
        assert event.error == "jobs 'build', 'test' failed and left no JUnit report"
        assert event.summary == {
            "jobs": [
                {"name": "build", "conclusion": "failure"},
                {"name": "docs", "conclusion": "success"},
                {"name": "test", "conclusion": "timed_out"},
            ]
        }
        assert session.scalar(select(func.count()).select_from(SuiteRun)) == 0
    assert executions(database) == []


def test_jobs_that_cannot_be_listed_do_not_lose_the_reports(
    client: TestClient,
    database: Database,
    settings: Settings,
    server: FakeProvider,
    github_samples: Path,
) -> None:
    register(database, Provider.GITHUB, "octo-org/octo-repo", server.url)
    script_github(server)
    server.on(f"{JOBS}?per_page=100", Answer(502))
    body = sample(github_samples, "workflow_run-completed-success.json")
    response = client.post(
        "/webhooks/github", content=body, headers=github_headers(body, event="workflow_run")
    )
    event_id = response.json()["event_id"]
    assert pull(database, settings, event_id) is EventStatus.HANDLED
    # Asked as often as the client retries a 5xx, then given up on.
    assert len(server.requests_to(JOBS)) == FAST.max_attempts
    with database.session() as session:
        event = session.get_one(CiEvent, event_id)
        assert event.status is EventStatus.HANDLED
        assert event.summary is None
        assert event.error is not None
        assert event.error.startswith("jobs not listed (their conclusions are unknown): ")
        assert "502" in event.error
    ingest_all(database)
    assert len(executions(database)) == 6
    assert ("tests.test_unit::test_b", "failed") in [
        (name, o) for _, name, o in executions(database)
    ]


PIPELINE_REPORT = {
    "total_count": 2,
    "test_suites": [
        {
            "name": "rspec",
            "test_cases": [
                {
                    "status": "success",
                    "name": "works",
                    "classname": "spec.app",
                    "execution_time": 1,
                },
                {"status": "failed", "name": "breaks", "classname": "spec.app", "stack_trace": "E"},
            ],
        }
    ],
}


def test_a_finished_pipeline_hook_pulls_the_test_report(
    client: TestClient,
    database: Database,
    settings: Settings,
    server: FakeProvider,
    gitlab_samples: Path,
) -> None:
    register(database, Provider.GITLAB, "redhat/centos-stream/rpms/luksmeta", server.url)
    report = "/projects/23680558/pipelines/384095584/test_report"
    server.on(report, json_answer(PIPELINE_REPORT))
    body = sample(gitlab_samples, "pipeline-hook-mr-failed.json")
    response = client.post(
        "/webhooks/gitlab", content=body, headers=gitlab_headers(event="Pipeline Hook")
    )
    assert response.json()["status"] == "queued", response.text
    assert pull(database, settings, response.json()["event_id"]) is EventStatus.HANDLED
    [asked] = server.requests_to(report)
    assert asked.headers["PRIVATE-TOKEN"] == TOKEN
    ingest_all(database)
    sha = "ee58e259da263ecb4c1f0129be7aef8cfd4dedd6"
    assert executions(database) == [
        (sha, "spec.app::breaks", "failed"),
        (sha, "spec.app::works", "passed"),
    ]
    with database.session() as session:
        assert session.scalar(select(SuiteRun.run_key)) == "gitlab-pipeline-384095584"


def test_a_rate_limit_that_resets_later_keeps_the_event_from_the_sweeper_until_then(
    client: TestClient, database: Database, github_samples: Path
) -> None:
    from datetime import timedelta

    from scheduler.models.base import utcnow
    from scheduler.services import events

    register(database, Provider.GITHUB, "octo-org/octo-repo", "http://127.0.0.1:9")
    body = sample(github_samples, "workflow_run-completed-success.json")
    response = client.post(
        "/webhooks/github", content=body, headers=github_headers(body, event="workflow_run")
    )
    event_id = response.json()["event_id"]
    with database.session() as session:
        status = events.record_event_error(
            session,
            event_id,
            error="pull: rate limited",
            max_attempts=10,
            not_before=utcnow() + timedelta(minutes=30),
        )
    assert status is EventStatus.PENDING
    with database.session() as session:
        soon = utcnow() + timedelta(minutes=5)
        assert events.claim_unhandled_events(session, queued_before=soon, max_attempts=10) == []
    with database.session() as session:
        later = utcnow() + timedelta(minutes=31)
        claimed = events.claim_unhandled_events(session, queued_before=later, max_attempts=10)
        assert claimed == [event_id]


def test_the_worker_records_why_a_pull_gave_up_and_keeps_the_event(
    client: TestClient,
    database: Database,
    settings: Settings,
    server: FakeProvider,
    github_samples: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker's task body (workers.events.process), in this process: a
    provider that keeps failing leaves the event pending with the error,
    then failed once the attempts are spent; a rate limit that resets past
    the pull's time limit keeps the sweeper away until then. The event and
    its payload stay throughout."""
    from datetime import timedelta

    from scheduler.config import get_settings
    from scheduler.models.base import utcnow
    from workers import events as event_tasks
    from workers.common import database_of

    register(database, Provider.GITHUB, "octo-org/octo-repo", server.url)
    server.on(ARTIFACTS, Answer(502))
    body = sample(github_samples, "workflow_run-completed-success.json")
    headers = github_headers(body, event="workflow_run")
    event_id = client.post("/webhooks/github", content=body, headers=headers).json()["event_id"]
    for name, value in {
        "RISKRANK_DATABASE_URL": settings.database_url,
        "RISKRANK_BROKER_URL": settings.broker_url,
        "RISKRANK_PROVIDER_MAX_ATTEMPTS": "2",
        "RISKRANK_PROVIDER_BACKOFF_SECONDS": "0.01",
        "RISKRANK_PROVIDER_TOTAL_SECONDS": "10",
        "RISKRANK_SWEEP_MAX_ATTEMPTS": "2",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        given_up = f"pull: GET {server.url.removeprefix('http://')}{ARTIFACTS}: HTTP 502"
        assert event_tasks.process(event_id) == EventStatus.PENDING.value
        with database.session() as session:
            event = session.get_one(CiEvent, event_id)
            assert (event.status, event.attempts) == (EventStatus.PENDING, 1)
            assert event.error == f"{given_up} after 2 attempts"
        assert event_tasks.process(event_id) == EventStatus.FAILED.value
        with database.session() as session:
            event = session.get_one(CiEvent, event_id)
            assert (event.status, event.attempts) == (EventStatus.FAILED, 2)
            assert event.error == f"{given_up} after 2 attempts"
            assert event.payload == json.loads(body)
        assert len(server.requests_to(ARTIFACTS)) == 4

        # A rate limit whose reset is an hour away: given up at once, the
        # event pending with the error and left alone until the reset.
        throttled_body = body.replace(b'"id": 289782451', b'"id": 289782452')
        assert throttled_body != body
        throttled = ARTIFACTS.replace("289782451", "289782452")
        server.on(throttled, json_answer({"message": "slow down"}, 429, **{"Retry-After": "3600"}))
        response = client.post(
            "/webhooks/github",
            content=throttled_body,
            headers=github_headers(throttled_body, event="workflow_run"),
        )
        throttled_id = response.json()["event_id"]
        assert event_tasks.process(throttled_id) == EventStatus.PENDING.value
        with database.session() as session:
            event = session.get_one(CiEvent, throttled_id)
            assert event.error is not None
            assert "HTTP 429 (rate limited)" in event.error
            queued_at = event.queued_at.replace(tzinfo=None)
            assert queued_at > (utcnow() + timedelta(minutes=55)).replace(tzinfo=None)
        assert len(server.requests_to(throttled)) == 1
    finally:
        database_of(get_settings()).dispose()  # the worker's engine, on the test's database
        get_settings.cache_clear()
