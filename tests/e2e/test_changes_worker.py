"""Pull requests through a real `riskrank worker` on Redis and PostgreSQL:
a signed GitHub `pull_request` and a GitLab Merge Request Hook (the real
samples) end in their head commits with the changed files a local server
answering like GitHub's and GitLab's APIs gives (paginated, once throttled
with Retry-After), and in a scored plan; a provider that refuses leaves the
pull request handled with what is known and the reason. When CI follows
the plan of a repository that posts commit statuses, the worker posts one."""

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
from scheduler.models import ChangedFile, Commit, EventStatus, Plan, Provider, Repository
from scheduler.services import history, repos, tokens
from tests.e2e.conftest import Start, clean_env, deliver, event, for_repository, provider_database
from tests.fake_provider import TOKEN, FakeProvider, json_answer, register
from tests.helpers import github_headers, sample, wait_for
from tests.planning.data import report

pytestmark = pytest.mark.slow

PR_FILES = "/repos/Codertocat/Hello-World/pulls/2/files"
MR_DIFFS = "/projects/14/merge_requests/1/diffs"
PR_HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
MR_HEAD = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
STATUS = f"/repos/Codertocat/Hello-World/statuses/{PR_HEAD}"


@pytest.fixture
def pg(postgres_url: str, server: FakeProvider) -> Iterator[Database]:
    yield from provider_database(
        postgres_url,
        server.url,
        [
            (Provider.GITHUB, "Codertocat/Hello-World"),
            (Provider.GITHUB, "Codertocat/denied"),
            (Provider.GITLAB, "gitlabhq/gitlab-test"),
        ],
        commit_status=True,
    )


def script(server: FakeProvider) -> None:
    page2 = f"{PR_FILES}?per_page=100&page=2"
    server.on(
        f"{PR_FILES}?per_page=100",
        json_answer({"message": "slow down"}, 429, **{"Retry-After": "1"}),
        json_answer(
            [{"filename": "tests/test_io.py", "status": "modified", "additions": 3}],
            Link=f'<{{base}}{page2}>; rel="next"',
        ),
    )
    server.on(page2, json_answer([{"filename": "src/io.py", "status": "added", "additions": 9}]))
    server.on(
        "/repos/Codertocat/denied/pulls/2/files", json_answer({"message": "Bad credentials"}, 401)
    )
    server.on(
        f"{MR_DIFFS}?per_page=100",
        json_answer(
            [{"old_path": "README.md", "new_path": "README.md", "diff": "+a\n"}],
            **{"X-Next-Page": "2"},
        ),
    )
    server.on(
        f"{MR_DIFFS}?per_page=100&page=2",
        json_answer([{"old_path": "b", "new_path": "b", "new_file": True, "diff": "+b\n+c\n"}]),
    )
    server.on(STATUS, json_answer({"id": 1}, 201))


def files(database: Database, sha: str) -> list[tuple[str, str]]:
    with database.session() as session:
        rows = session.execute(
            select(ChangedFile.path, ChangedFile.status)
            .join(Commit, Commit.id == ChangedFile.commit_id)
            .where(Commit.sha == sha)
            .order_by(ChangedFile.path)
        )
        return [(path, status.value) for path, status in rows]


def plans_of(database: Database, sha: str) -> list[int]:
    with database.session() as session:
        return list(
            session.scalars(
                select(Plan.id).join(Commit, Commit.id == Plan.commit_id).where(Commit.sha == sha)
            )
        )


def test_pull_requests_get_their_files_and_plans_through_a_real_worker(
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
    with pg.session() as session:
        hello = repos.find_repository(
            session, provider=Provider.GITHUB, full_name="Codertocat/Hello-World"
        )
        assert hello is not None
        hello_id = hello.id
        plans_token = tokens.create_token(
            session, repository=hello, scopes=(tokens.Scope.PLANS_READ,), name="ci"
        ).token
    # Tests riskrank knows, so that the plan has something to select.
    history.import_history(pg, repository_id=hello_id, reports=[report(1, set()), report(2, set())])
    env = clean_env(
        RISKRANK_DATABASE_URL=postgres_url,
        RISKRANK_BROKER_URL=redis_url,
        RISKRANK_PROVIDER_MAX_ATTEMPTS="3",
        RISKRANK_PROVIDER_BACKOFF_SECONDS="0.01",
        RISKRANK_PROVIDER_TOTAL_SECONDS="10",
    )
    worker = start("worker", "--concurrency", "1", env=env)

    settings = Settings(database_url=postgres_url, broker_url=redis_url)
    opened = sample(github_samples, "pull_request-opened.json")
    _, denied = for_repository(opened, "Codertocat/denied")
    merge_request = sample(gitlab_samples, "merge-request-hook-open.json")
    with TestClient(create_app(settings)) as client:
        ids = deliver(
            client,
            github=("pull_request", [opened, denied]),
            gitlab=("Merge Request Hook", merge_request),
        )

        def logs() -> str:
            return f"worker:\n{worker.output()}"

        wait_for(
            lambda: (
                all(event(pg, i).status is not EventStatus.PENDING for i in ids)
                and bool(plans_of(pg, PR_HEAD))
            ),
            timeout=120,
            what=f"the three events and the pull request's plan; {logs()}",
        )
        github_event, denied_event, gitlab_event = (event(pg, i) for i in ids)
        assert (github_event.status, github_event.error) == (EventStatus.HANDLED, None)
        with pg.session() as session:
            repository_of = dict(
                session.execute(
                    select(Commit.sha, Repository.slug).join(
                        Repository, Repository.id == Commit.repository_id
                    )
                ).all()
            )
        assert files(pg, PR_HEAD) == [("src/io.py", "added"), ("tests/test_io.py", "modified")]
        assert len(server.requests_to(PR_FILES)) == 3  # throttled once, then two pages
        assert (gitlab_event.status, gitlab_event.error) == (EventStatus.HANDLED, None)
        assert files(pg, MR_HEAD) == [("README.md", "modified"), ("b", "added")]
        assert repository_of[MR_HEAD] == "gitlabhq/gitlab-test"
        # Refused: handled with what is known (the head, no files), and why.
        assert denied_event.status is EventStatus.HANDLED
        assert denied_event.error is not None
        assert denied_event.error.endswith("/repos/Codertocat/denied/pulls/2/files: HTTP 401")

        # CI follows the plan: its commit status is posted by the worker.
        response = client.get(
            f"/api/v1/repos/Codertocat/Hello-World/plans/{PR_HEAD}",
            params={"mode": "fraction", "budget": "0.5"},
            headers={"Authorization": f"Bearer {plans_token}"},
        )
        assert response.status_code == 200, response.text
        plan = response.json()
    wait_for(
        lambda: bool(server.requests_to(STATUS)),
        timeout=60,
        what=f"the commit status; {logs()}",
    )
    [posted] = server.requests_to(STATUS)
    body = json.loads(posted.body)
    assert (body["state"], body["context"]) == ("success", "riskrank")
    assert body["description"].startswith(
        f"riskrank: {plan['selected']} of {plan['total']} tests selected, ~"
    )
    assert TOKEN not in worker.output()
    assert worker.popen.poll() is None, logs()


FORCED_BEFORE = "d89fce43657c5fc2de8f677a052c9dcca941872a"
FORCED_AFTER = "1f65bfd479dddb9453466feeaf4ac9249a2ac9df"
COMPARE = f"/repos/flightctl/flightctl/compare/{FORCED_BEFORE}...{FORCED_AFTER}"


def test_a_failing_provider_is_asked_again_later_and_no_event_is_lost(
    pg: Database,
    postgres_url: str,
    redis_url: str,
    server: FakeProvider,
    start: Start,
    github_samples: Path,
) -> None:
    """A pull request's files answer 502 through the HTTP client's two tries,
    then 200 when the worker asks again; a forced push's comparison answers
    502 whenever asked: after three attempts it is handled with the files its
    payload lists, the error says so, and its plan is scored all the same."""
    bad_gateway = json_answer({"message": "Bad Gateway"}, 502)
    server.on(
        f"{PR_FILES}?per_page=100",
        bad_gateway,
        bad_gateway,
        json_answer([{"filename": "tests/test_io.py", "status": "modified", "additions": 3}]),
    )
    server.on(f"{COMPARE}?per_page=100", bad_gateway)
    forced_id = register(pg, Provider.GITHUB, "flightctl/flightctl", server.url)
    history.import_history(pg, repository_id=forced_id, reports=[report(1, set())])
    env = clean_env(
        RISKRANK_DATABASE_URL=postgres_url,
        RISKRANK_BROKER_URL=redis_url,
        RISKRANK_PROVIDER_MAX_ATTEMPTS="2",
        RISKRANK_PROVIDER_BACKOFF_SECONDS="0.01",
        RISKRANK_PROVIDER_TOTAL_SECONDS="10",
        RISKRANK_CHANGES_MAX_ATTEMPTS="3",
        RISKRANK_CHANGES_RETRY_SECONDS="1",
    )
    worker = start("worker", "--concurrency", "1", env=env)
    settings = Settings(database_url=postgres_url, broker_url=redis_url)
    opened = sample(github_samples, "pull_request-opened.json")
    push = sample(github_samples, "push-forced.json")
    with TestClient(create_app(settings)) as client:
        pull_id = client.post(
            "/webhooks/github", content=opened, headers=github_headers(opened, event="pull_request")
        ).json()["event_id"]
        push_id = client.post(
            "/webhooks/github", content=push, headers=github_headers(push)
        ).json()["event_id"]

    wait_for(
        lambda: (
            all(event(pg, i).status is not EventStatus.PENDING for i in (pull_id, push_id))
            and bool(plans_of(pg, FORCED_AFTER))
        ),
        timeout=120,
        what=f"both events handled and the push's plan; worker:\n{worker.output()}",
    )
    pulled = event(pg, pull_id)
    assert (pulled.status, pulled.error, pulled.attempts) == (EventStatus.HANDLED, None, 2)
    assert files(pg, PR_HEAD) == [("tests/test_io.py", "modified")]
    assert len(server.requests_to(PR_FILES)) == 3  # two 502s in the first attempt, then 200
    pushed = event(pg, push_id)
    host = server.url.removeprefix("http://")
    assert (pushed.status, pushed.attempts) == (EventStatus.HANDLED, 3)
    assert pushed.error == (
        "changed files unknown after 3 attempts, handled with the payload's: "
        f"GET {host}{COMPARE}: HTTP 502 after 2 attempts"
    )
    assert len(server.requests_to(COMPARE)) == 6  # three attempts of two tries
    # The files the push's payload lists, and a plan scored from them, which
    # says so (the pull request's files came: nothing to say there).
    assert files(pg, FORCED_AFTER) == [("internal/service/enrollmentrequest.go", "modified")]
    assert plans_of(pg, FORCED_AFTER)
    with pg.session() as session:
        rows = session.execute(
            select(Commit.sha, Commit.changes_note).where(Commit.sha.in_([FORCED_AFTER, PR_HEAD]))
        )
        notes = {sha: note for sha, note in rows}
    assert notes == {
        FORCED_AFTER: f"changed files unknown (GET {host}{COMPARE}: HTTP 502 after 2 attempts); "
        "scored with the push's own list",
        PR_HEAD: None,
    }
    output = worker.output()
    assert output.count("changed files not fetched, asking again in") == 3  # 1 + 2
    assert TOKEN not in output
    assert worker.popen.poll() is None, output
