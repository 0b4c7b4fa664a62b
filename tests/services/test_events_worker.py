"""A GitLab push and a generic commit reach PostgreSQL through a real
`riskrank worker` on the real Redis broker, and each one's head is scored,
as tests/e2e/test_worker_postgres.py shows for GitHub."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from scheduler.api.app import create_app
from scheduler.config import Settings
from scheduler.db import Database
from scheduler.models import ChangedFile, CiEvent, Commit, EventStatus, Plan, PlanStatus, Provider
from scheduler.services import repos
from tests.conftest import empty_all_tables
from tests.e2e.conftest import RISKRANK, Process, clean_env
from tests.helpers import SECRET, generic_headers, gitlab_headers, sample, wait_for

pytestmark = pytest.mark.slow

GITLAB_HEAD = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
GENERIC_SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    database = Database.from_url(postgres_url)
    empty_all_tables(database)
    with database.session() as session:
        repos.add_repository(
            session, provider=Provider.GITLAB, full_name="mike/diaspora", webhook_secret=SECRET
        )
        repos.add_repository(
            session, provider=Provider.GENERIC, full_name="acme/app", webhook_secret=SECRET
        )
    yield database
    database.dispose()


@pytest.fixture
def worker(postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[Process]:
    env = clean_env(RISKRANK_DATABASE_URL=postgres_url, RISKRANK_BROKER_URL=redis_url)
    process = Process(
        [RISKRANK, "worker", "--concurrency", "1"], env=env, cwd=tmp_path, log=tmp_path / "w.log"
    )
    yield process
    process.stop()


def event_status(database: Database, event_id: int) -> EventStatus:
    with database.session() as session:
        return session.get_one(CiEvent, event_id).status


def plan_status(database: Database, sha: str) -> PlanStatus | None:
    with database.session() as session:
        return session.scalar(
            select(Plan.status).join(Commit, Commit.id == Plan.commit_id).where(Commit.sha == sha)
        )


def test_gitlab_push_and_generic_commit_are_processed_and_scored_by_a_real_worker(
    pg: Database,
    postgres_url: str,
    redis_url: str,
    worker: Process,
    gitlab_samples: Path,
) -> None:
    settings = Settings(database_url=postgres_url, broker_url=redis_url)
    push = sample(gitlab_samples, "push-hook.json")
    commit = json.dumps(
        {
            "repository": "acme/app",
            "commit": GENERIC_SHA,
            "branch": "main",
            "changed_files": [{"path": "src/a.py", "status": "modified"}],
        }
    ).encode()
    with TestClient(create_app(settings)) as client:
        pushed = client.post("/webhooks/gitlab", content=push, headers=gitlab_headers())
        sent = client.post("/webhooks/generic", content=commit, headers=generic_headers(commit))
    assert (pushed.status_code, sent.status_code) == (202, 202), (pushed.text, sent.text)

    event_ids = [response.json()["event_id"] for response in (pushed, sent)]
    wait_for(
        lambda: all(event_status(pg, event_id) is EventStatus.HANDLED for event_id in event_ids),
        timeout=60,
        what=f"the worker to handle events {event_ids}; its log:\n{worker.output()}",
    )
    with pg.session() as session:
        files = session.execute(
            select(Commit.sha, ChangedFile.path).join(
                ChangedFile, ChangedFile.commit_id == Commit.id
            )
        ).all()
    assert len(files) == 5  # 2 GitLab commits with 2 files each, 1 generic with 1

    def plans() -> list[PlanStatus | None] | None:
        statuses = [plan_status(pg, sha) for sha in (GITLAB_HEAD, GENERIC_SHA)]
        return statuses if all(statuses) else None

    statuses = wait_for(plans, timeout=60, what=f"both heads' plans; log:\n{worker.output()}")
    assert statuses == [PlanStatus.HEURISTIC, PlanStatus.HEURISTIC]
    # Only the heads are scored: the GitLab push's older commit is not.
    assert plan_status(pg, "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327") is None
    assert worker.popen.poll() is None, worker.output()
