"""A signed GitHub push reaches PostgreSQL through a real `riskrank worker`
on the real Redis broker; a push accepted while the broker was down is
processed once `riskrank beat`'s sweeper finds it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from scheduler.api.app import create_app
from scheduler.config import Settings
from scheduler.db import Database
from scheduler.models import (
    ChangedFile,
    CiEvent,
    Commit,
    EventStatus,
    FileStatus,
    KnownTest,
    KnownTestStats,
    Plan,
    PlanStatus,
    Provider,
    RunStatus,
    SuiteRun,
)
from scheduler.services import repos, tokens
from tests.conftest import empty_all_tables
from tests.e2e.conftest import Process, clean_env
from tests.helpers import SECRET, github_headers, sample, wait_for

pytestmark = pytest.mark.slow

Start = Callable[..., Process]


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    database = Database.from_url(postgres_url)
    empty_all_tables(database)
    with database.session() as session:
        repos.add_repository(
            session,
            provider=Provider.GITHUB,
            full_name="binkkatal/sample_app",
            webhook_secret=SECRET,
        )
    yield database
    database.dispose()


@pytest.fixture
def service_env(postgres_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return clean_env(
        RISKRANK_DATABASE_URL=postgres_url,
        RISKRANK_BROKER_URL=redis_url,
        RISKRANK_SWEEP_INTERVAL_SECONDS="1",
        RISKRANK_SWEEP_MIN_AGE_SECONDS="1",
        RISKRANK_BEAT_SCHEDULE_FILE=str(tmp_path / "beat-schedule"),
    )


def event_status(database: Database, event_id: int) -> EventStatus:
    with database.session() as session:
        event = session.get(CiEvent, event_id)
        assert event is not None
        return event.status


def commits_and_files(database: Database) -> list[tuple[str, str | None, str, FileStatus]]:
    with database.session() as session:
        rows = session.execute(
            select(Commit.sha, Commit.parent_sha, ChangedFile.path, ChangedFile.status)
            .join(ChangedFile, ChangedFile.commit_id == Commit.id)
            .order_by(ChangedFile.path)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


EXPECTED = [
    (
        "fd489864e7642b48eaad6e3f155c10e46810ec72",
        "737d38c599c1b2991664dfc6155d6bf516fcce36",
        ".razorops.yaml",
        FileStatus.ADDED,
    ),
    (
        "fd489864e7642b48eaad6e3f155c10e46810ec72",
        "737d38c599c1b2991664dfc6155d6bf516fcce36",
        "app/controllers/application_controller.rb",
        FileStatus.MODIFIED,
    ),
]


def test_signed_push_reaches_the_database_through_a_real_worker(
    pg: Database,
    postgres_url: str,
    redis_url: str,
    service_env: dict[str, str],
    start: Start,
    github_samples: Path,
) -> None:
    worker = start("worker", "--concurrency", "1", env=service_env)
    settings = Settings(database_url=postgres_url, broker_url=redis_url)
    body = sample(github_samples, "push-normal-branch.json")
    with TestClient(create_app(settings)) as client:
        response = client.post("/webhooks/github", content=body, headers=github_headers(body))
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]

    wait_for(
        lambda: event_status(pg, event_id) is EventStatus.HANDLED,
        timeout=60,
        what=f"the worker to handle event {event_id}; its log:\n{worker.output()}",
    )
    assert commits_and_files(pg) == EXPECTED
    assert worker.popen.poll() is None, worker.output()

    # The pushed head is scored: a plan (heuristic, no model yet) for it.
    def plan_status() -> PlanStatus | None:
        with pg.session() as session:
            return session.scalar(
                select(Plan.status)
                .join(Commit, Commit.id == Plan.commit_id)
                .where(Commit.sha == EXPECTED[0][0])
            )

    assert wait_for(plan_status, timeout=60, what="the head commit's plan") is PlanStatus.HEURISTIC


def test_push_accepted_while_the_broker_was_down_is_processed_by_the_sweeper(
    pg: Database,
    postgres_url: str,
    service_env: dict[str, str],
    start: Start,
    github_samples: Path,
) -> None:
    down = Settings(
        database_url=postgres_url, broker_url="redis://127.0.0.1:1/0", publish_timeout_seconds=0.5
    )
    body = sample(github_samples, "push-normal-branch.json")
    with TestClient(create_app(down)) as client:
        response = client.post("/webhooks/github", content=body, headers=github_headers(body))
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    assert event_status(pg, event_id) is EventStatus.PENDING

    # The broker is back: a worker and the one beat run against it.
    worker = start("worker", "--concurrency", "1", env=service_env)
    beat = start("beat", env=service_env)
    wait_for(
        lambda: event_status(pg, event_id) is EventStatus.HANDLED,
        timeout=90,
        what=f"the sweeper to requeue event {event_id}; beat:\n{beat.output()}\n"
        f"worker:\n{worker.output()}",
    )
    assert commits_and_files(pg) == EXPECTED


REPORT = b"""<testsuites><testsuite name="pytest">
<testcase classname="tests.test_io.TestReader" file="tests/test_io.py" name="test_eof" time="0.2">
  <failure message="EOFError">boom</failure></testcase>
<testcase classname="tests.test_io" file="tests/test_io.py" name="test_open" time="0.1"/>
</testsuite></testsuites>"""


def ingested_statistics(database: Database) -> dict[str, tuple[int, int, str]]:
    with database.session() as session:
        rows = session.execute(
            select(
                KnownTest.name, KnownTestStats.runs, KnownTestStats.failures, KnownTestStats.recent
            ).join(KnownTestStats, KnownTestStats.test_id == KnownTest.id)
        )
        return {name: (runs, failures, recent) for name, runs, failures, recent in rows}


@pytest.mark.parametrize("broker_down_at_first", [False, True], ids=["live", "broker-was-down"])
def test_a_posted_report_is_ingested_by_a_real_worker(
    pg: Database,
    postgres_url: str,
    redis_url: str,
    service_env: dict[str, str],
    start: Start,
    broker_down_at_first: bool,
) -> None:
    with pg.session() as session:
        repository = repos.resolve_repository(session, full_name="binkkatal/sample_app")
        token = tokens.create_token(
            session, repository=repository, scopes=tokens.DEFAULT_SCOPES, name="ci"
        ).token
    broker = "redis://127.0.0.1:1/0" if broker_down_at_first else redis_url
    settings = Settings(database_url=postgres_url, broker_url=broker, publish_timeout_seconds=0.5)
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/api/v1/repos/binkkatal/sample_app/runs",
            params={"commit": "fd489864e7642b48eaad6e3f155c10e46810ec72"},
            content=REPORT,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/xml"},
        )
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]

    worker = start("worker", "--concurrency", "1", env=service_env)
    beat = start("beat", env=service_env) if broker_down_at_first else None

    def status() -> RunStatus:
        with pg.session() as session:
            return session.get_one(SuiteRun, run_id).status

    wait_for(
        lambda: status() is RunStatus.INGESTED,
        timeout=90,
        what=f"run {run_id} to be ingested; worker:\n{worker.output()}"
        + (f"\nbeat:\n{beat.output()}" if beat else ""),
    )
    assert ingested_statistics(pg) == {
        "tests/test_io.py::TestReader::test_eof": (1, 1, "F"),
        "tests/test_io.py::test_open": (1, 0, "P"),
    }
