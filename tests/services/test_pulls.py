"""Results pulled from the CI, on both databases: a completed workflow_run
(the real sample) or a finished Pipeline Hook is stored and queued, the
provider (a local server answering like GitHub's and GitLab's APIs) is asked
for the run's reports, and they become runs and executions as an uploaded
report does, once however often they are pulled."""

from __future__ import annotations

import json
from collections.abc import Iterator
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


def deliver_run(client: TestClient, github_samples: Path) -> int:
    """The completed workflow_run sample, delivered as GitHub does: its event's id."""
    body = sample(github_samples, "workflow_run-completed-success.json")
    response = client.post(
        "/webhooks/github", content=body, headers=github_headers(body, event="workflow_run")
    )
    event_id: int = response.json()["event_id"]
    return event_id


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
    event_id = deliver_run(client, github_samples)
    with pytest.raises(pulls.PullFailed) as raised:
        pull(database, settings, event_id)
    assert raised.value.retryable
    assert len(server.requests_to(ARTIFACTS)) == FAST.max_attempts
    with database.session() as session:
        event = session.get_one(CiEvent, event_id)
        assert event.status is EventStatus.PENDING  # nothing stored, nothing lost

    script_github(server)
    assert pull(database, settings, event_id) is EventStatus.HANDLED


# A wide matrix: 30 more jobs than the summary keeps, two failed past the cut.
WIDE = pulls.SUMMARY_JOBS + 30
WIDE_FAILED = (WIDE - 20, WIDE - 1)


def conclusion(number: int) -> str:
    return "failure" if number in WIDE_FAILED else "success"


@pytest.mark.parametrize(
    ("jobs", "error", "summary"),
    [
        (
            [job("build", "failure"), job("docs", "success"), job("test", "timed_out")],
            "jobs 'build', 'test' failed and left no JUnit report",
            {
                "jobs": [
                    {"name": "build", "conclusion": "failure"},
                    {"name": "docs", "conclusion": "success"},
                    {"name": "test", "conclusion": "timed_out"},
                ]
            },
        ),
        # At most SUMMARY_JOBS kept, the failed ones first, in the order
        # listed, the rest counted; the error names every failed job.
        (
            [job(f"test ({number})", conclusion(number)) for number in range(WIDE)],
            f"jobs 'test ({WIDE - 20})', 'test ({WIDE - 1})' failed and left no JUnit report",
            {
                "jobs": [
                    {"name": f"test ({number})", "conclusion": conclusion(number)}
                    for number in range(WIDE)
                    if number < pulls.SUMMARY_JOBS - 2 or number in WIDE_FAILED
                ],
                "more_jobs": 30,
            },
        ),
    ],
    ids=["three", "wide"],
)
def test_a_failed_job_that_left_no_report_is_said_and_no_outcome_is_made_up(
    client: TestClient,
    database: Database,
    settings: Settings,
    server: FakeProvider,
    github_samples: Path,
    jobs: list[dict[str, Any]],
    error: str,
    summary: dict[str, Any],
) -> None:
    register(database, Provider.GITHUB, "octo-org/octo-repo", server.url)
    # No JUnit artifact: the tests never ran (the build broke before them).
    server.on(ARTIFACTS, json_answer({"total_count": 0, "artifacts": []}))
    script_jobs(server, *jobs)
    event_id = deliver_run(client, github_samples)
    assert pull(database, settings, event_id) is EventStatus.HANDLED
    with database.session() as session:
        event = session.get_one(CiEvent, event_id)
        assert event.error == error
        assert event.summary == summary
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
    event_id = deliver_run(client, github_samples)
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


@pytest.fixture
def worker_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The worker's settings (scheduler.config.get_settings) on the test's
    database and broker, with short provider retries."""
    from scheduler.config import get_settings
    from workers.common import database_of

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
        yield
    finally:
        database_of(get_settings()).dispose()  # the worker's engine, on the test's database
        get_settings.cache_clear()


GITLAB_PROJECT = "redhat/centos-stream/rpms/luksmeta"
GITLAB_SHA = "ee58e259da263ecb4c1f0129be7aef8cfd4dedd6"
TEST_REPORT = "/projects/23680558/pipelines/384095584/test_report"
PIPELINE_JOBS = "/projects/23680558/pipelines/384095584/jobs"


def gitlab_job(number: int, name: str, archive: bytes | None) -> dict[str, Any]:
    """A job as GitLab lists it: its artifacts files (the archive, and the
    JUnit report GitLab keeps apart when the job declares one)."""
    listed = [{"file_type": "trace", "size": 1000, "filename": "job.log", "file_format": None}]
    if archive is not None:
        listed.append(
            {
                "file_type": "archive",
                "size": len(archive),
                "filename": "artifacts.zip",
                "file_format": "zip",
            }
        )
    return {"id": number, "name": name, "status": "success", "artifacts": listed}


def script_gitlab_jobs(server: FakeProvider, *, test_report: Answer) -> dict[int, bytes]:
    """A pipeline whose test report is `test_report`, and whose jobs (over
    two pages, by `X-Next-Page`) keep their JUnit files in `artifacts:paths`
    only; the archives by job id."""
    archives = {
        # Not matched by its name: the files whose paths match the globs.
        2: ZIP,
        # Matched by its name: every JUnit file in it, whatever its path.
        4: zip_of({"out/results.xml": suite("extra")}),
        # Neither: a JUnit file passed over, unread.
        5: zip_of({"lint/report.xml": suite("lint", failing="a")}),
    }
    server.on(TEST_REPORT, test_report)
    server.on(
        f"{PIPELINE_JOBS}?per_page=100",
        json_answer(
            [gitlab_job(1, "build", None), gitlab_job(2, "rspec", archives[2])],
            **{"X-Next-Page": "2", "X-Page": "1"},
        ),
    )
    server.on(
        f"{PIPELINE_JOBS}?per_page=100&page=2",
        json_answer(
            [
                gitlab_job(4, "JUnit tests", archives[4]),
                gitlab_job(5, "lint", archives[5]),
            ],
            **{"X-Next-Page": "", "X-Page": "2"},
        ),
    )
    zipped = {"Content-Type": "application/zip"}
    # A 502 on the first download: tried again within the pull.
    server.on("/projects/23680558/jobs/2/artifacts", Answer(502), Answer(200, ZIP, zipped))
    for number in (4, 5):
        server.on(
            f"/projects/23680558/jobs/{number}/artifacts", Answer(200, archives[number], zipped)
        )
    return archives


@pytest.mark.parametrize(
    "test_report",
    [
        json_answer({"total_count": 0, "test_suites": []}),
        json_answer({"message": "404 Not Found"}, 404),  # a GitLab without the report
    ],
    ids=["empty", "absent"],
)
def test_a_pipeline_without_a_test_report_pulls_the_jobs_junit_artifacts_once(
    client: TestClient,
    database: Database,
    settings: Settings,
    server: FakeProvider,
    gitlab_samples: Path,
    test_report: Answer,
) -> None:
    register(database, Provider.GITLAB, GITLAB_PROJECT, server.url)
    script_gitlab_jobs(server, test_report=test_report)
    body = sample(gitlab_samples, "pipeline-hook-mr-failed.json")
    response = client.post(
        "/webhooks/gitlab", content=body, headers=gitlab_headers(event="Pipeline Hook")
    )
    assert response.json()["status"] == "queued", response.text
    assert pull(database, settings, response.json()["event_id"]) is EventStatus.HANDLED

    # Both pages listed; the job without an archive never asked for one.
    assert [seen.path for seen in server.requests_to(PIPELINE_JOBS)] == [
        f"{PIPELINE_JOBS}?per_page=100",
        f"{PIPELINE_JOBS}?per_page=100&page=2",
    ]
    assert server.requests_to("/projects/23680558/jobs/1/artifacts") == []
    assert len(server.requests_to("/projects/23680558/jobs/2/artifacts")) == 2  # the 502, again
    assert all(
        seen.headers["PRIVATE-TOKEN"] == TOKEN
        for seen in server.seen
        if seen.path.startswith("/projects/")
    )
    ingest_all(database)
    expected = [
        (GITLAB_SHA, f"tests.test_{suite_name}::test_{case}", outcome)
        for suite_name, case, outcome in [
            ("api", "a", "passed"),
            ("api", "b", "passed"),
            ("api", "c", "passed"),
            ("extra", "a", "passed"),
            ("extra", "b", "passed"),
            ("extra", "c", "passed"),
            ("unit", "a", "passed"),
            ("unit", "b", "failed"),
            ("unit", "c", "passed"),
        ]
    ]
    assert executions(database) == expected
    with database.session() as session:
        keys = list(session.scalars(select(SuiteRun.run_key)))
    assert keys == ["gitlab-pipeline-384095584"] * 3

    # Delivered again: pulled again, nothing stored twice.
    again = client.post(
        "/webhooks/gitlab", content=body, headers=gitlab_headers(event="Pipeline Hook")
    )
    assert again.json()["status"] == "queued", again.text
    assert pull(database, settings, again.json()["event_id"]) is EventStatus.HANDLED
    ingest_all(database)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(SuiteRun)) == 3
    assert executions(database) == expected


@pytest.mark.parametrize(
    ("archive", "reason"),
    [
        (b"PK\x03\x04 not a zip at all", "the artifact is not a zip archive"),
        (
            zip_of({f"junit-{n}.xml": suite(str(n)) for n in range(3)}),
            "3 files, over the limit of 2",
        ),
        (b"x" * 5000, "5000 bytes, over the limit of 4096"),
    ],
    ids=["corrupt", "too-many-files", "too-big"],
)
def test_a_job_archive_riskrank_cannot_read_fails_the_event_with_the_reason(
    client: TestClient,
    database: Database,
    server: FakeProvider,
    gitlab_samples: Path,
    worker_env: None,
    monkeypatch: pytest.MonkeyPatch,
    archive: bytes,
    reason: str,
) -> None:
    """Through the worker's task body: the event fails with the reason, and stays."""
    from scheduler.config import get_settings
    from workers import events as event_tasks

    monkeypatch.setenv("RISKRANK_PULL_MAX_FILES", "2")
    monkeypatch.setenv("RISKRANK_PULL_MAX_ARTIFACT_BYTES", "4096")
    get_settings.cache_clear()
    register(database, Provider.GITLAB, GITLAB_PROJECT, server.url)
    server.on(TEST_REPORT, json_answer({"total_count": 0, "test_suites": []}))
    server.on(PIPELINE_JOBS, json_answer([gitlab_job(7, "unit", archive)]))
    server.on("/projects/23680558/jobs/7/artifacts", Answer(200, archive))
    body = sample(gitlab_samples, "pipeline-hook-mr-failed.json")
    response = client.post(
        "/webhooks/gitlab", content=body, headers=gitlab_headers(event="Pipeline Hook")
    )
    event_id = response.json()["event_id"]
    assert event_tasks.process(event_id) == EventStatus.FAILED.value
    with database.session() as session:
        event = session.get_one(CiEvent, event_id)
        assert event.error is not None
        assert reason in event.error
        assert event.payload == json.loads(body)
        assert session.scalar(select(func.count()).select_from(SuiteRun)) == 0


def test_a_project_the_token_cannot_see_fails_on_the_jobs_not_on_the_missing_report(
    client: TestClient,
    database: Database,
    server: FakeProvider,
    gitlab_samples: Path,
) -> None:
    """GitLab answers 404 for a project the token cannot see: the missing
    test report leads to the jobs, whose 404 is the reason given."""
    register(database, Provider.GITLAB, GITLAB_PROJECT, server.url)
    body = sample(gitlab_samples, "pipeline-hook-mr-failed.json")
    response = client.post(
        "/webhooks/gitlab", content=body, headers=gitlab_headers(event="Pipeline Hook")
    )
    with database.session() as session:
        job = pulls.pull_job(session, response.json()["event_id"])
    assert job is not None
    with pytest.raises(pulls.PullFailed) as raised:
        pulls.fetch_reports(job, http=FAST, limits=ZipLimits())
    assert not raised.value.retryable
    assert raised.value.message.endswith(f"{PIPELINE_JOBS}: HTTP 404")
    assert [len(server.requests_to(path)) for path in (TEST_REPORT, PIPELINE_JOBS)] == [1, 1]


def test_a_rate_limit_that_resets_later_keeps_the_event_from_the_sweeper_until_then(
    client: TestClient, database: Database, github_samples: Path
) -> None:
    from datetime import timedelta

    from scheduler.models.base import utcnow
    from scheduler.services import events

    register(database, Provider.GITHUB, "octo-org/octo-repo", "http://127.0.0.1:9")
    event_id = deliver_run(client, github_samples)
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
    server: FakeProvider,
    github_samples: Path,
    worker_env: None,
) -> None:
    """The worker's task body (workers.events.process), in this process: a
    provider that keeps failing leaves the event pending with the error,
    then failed once the attempts are spent; a rate limit that resets past
    the pull's time limit keeps the sweeper away until then. The event and
    its payload stay throughout."""
    from datetime import timedelta

    from scheduler.models.base import utcnow
    from workers import events as event_tasks

    register(database, Provider.GITHUB, "octo-org/octo-repo", server.url)
    server.on(ARTIFACTS, Answer(502))
    body = sample(github_samples, "workflow_run-completed-success.json")
    headers = github_headers(body, event="workflow_run")
    event_id = client.post("/webhooks/github", content=body, headers=headers).json()["event_id"]
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
