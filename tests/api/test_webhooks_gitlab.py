"""POST /webhooks/gitlab on real databases and a real Redis broker, with the
GitLab samples (../shared/samples/dev/gitlab) and the headers GitLab sends."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from scheduler.db import Database
from scheduler.models import ChangedFile, CiEvent, Commit, EventStatus, Provider
from scheduler.queue import EVENTS_PROCESS
from scheduler.services import events, repos
from tests.helpers import SECRET, gitlab_headers, metric_value, queued_tasks, sample

URL = "/webhooks/gitlab"

# Every sample with the X-Gitlab-Event GitLab sends it under, and what
# becomes of it: queued (stored, processed), recorded (stored only) or
# ignored (acknowledged, not stored).
SAMPLES = [
    ("push-hook.json", "Push Hook", "queued"),
    ("tag-push-hook-created.json", "Tag Push Hook", "recorded"),
    ("merge-request-hook-open.json", "Merge Request Hook", "queued"),
    ("pipeline-hook-success-5-builds.json", "Pipeline Hook", "ignored"),
    ("pipeline-hook-mr-failed.json", "Pipeline Hook", "ignored"),
    ("job-hook-script-failure.json", "Job Hook", "ignored"),
    # GitLab before 9.3 called job events builds.
    ("build-hook-legacy.json", "Build Hook", "ignored"),
]


@pytest.fixture
def registered(database: Database, gitlab_samples: Path) -> list[str]:
    """Every project the samples name (one of them in nested groups), with
    the tests' secret."""
    names = set()
    for path in gitlab_samples.glob("*.json"):
        project = json.loads(path.read_bytes()).get("project")
        if isinstance(project, dict):
            names.add(project["path_with_namespace"])
    with database.session() as session:
        for name in sorted(names):
            repos.add_repository(
                session, provider=Provider.GITLAB, full_name=name, webhook_secret=SECRET
            )
    return sorted(names)


def stored_events(database: Database) -> list[CiEvent]:
    with database.session() as session:
        return list(session.scalars(select(CiEvent).order_by(CiEvent.id)))


def test_the_samples_name_five_projects_one_nested(registered: list[str]) -> None:
    assert registered == [
        "gitlab-org/gitlab-test",
        "gitlabhq/gitlab-test",
        "jsmith/example",
        "mike/diaspora",
        "redhat/centos-stream/rpms/luksmeta",
    ]


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize(("name", "event", "result"), SAMPLES)
def test_every_sample_is_acknowledged_and_stored_or_not(
    client: TestClient,
    database: Database,
    redis_server: redis.Redis,
    gitlab_samples: Path,
    name: str,
    event: str,
    result: str,
) -> None:
    body = sample(gitlab_samples, name)
    headers = gitlab_headers(event=event, idempotency_key=f"key-{name}")
    response = client.post(URL, content=body, headers=headers)

    assert response.status_code == 202, response.text
    stored = stored_events(database)
    if result == "ignored":
        assert response.json() == {"status": "ignored", "event_id": None}
        assert stored == []
        assert queued_tasks(redis_server) == []
        return
    [row] = stored
    assert response.json() == {"status": result, "event_id": row.id}
    assert (row.provider, row.delivery_id, row.event) == (Provider.GITLAB, f"key-{name}", event)
    assert row.payload == json.loads(body)
    if result == "queued":
        assert row.status is EventStatus.PENDING
        assert queued_tasks(redis_server) == [(EVENTS_PROCESS, [row.id])]
    else:
        assert row.status is EventStatus.IGNORED
        assert row.handled_at is not None
        assert queued_tasks(redis_server) == []


@pytest.mark.usefixtures("registered")
def test_a_push_hook_becomes_its_commits_and_its_head(
    client: TestClient, database: Database, gitlab_samples: Path
) -> None:
    body = sample(gitlab_samples, "push-hook.json")
    response = client.post(URL, content=body, headers=gitlab_headers())
    event_id = response.json()["event_id"]

    with database.session() as session:
        assert events.process_event(session, event_id) is EventStatus.HANDLED
    with database.session() as session:
        assert events.process_event(session, event_id) is EventStatus.HANDLED
        commits = session.execute(select(Commit.sha, Commit.parent_sha, Commit.branch)).all()
        files = session.scalar(select(func.count()).select_from(ChangedFile))
        head = events.pushed_head(session, event_id)
        head_sha = session.scalar(select(Commit.sha).where(Commit.id == head))
    assert sorted(commits) == [
        ("b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327", None, "master"),
        (
            "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
            "master",
        ),
    ]
    assert files == 4
    assert head_sha == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize(
    "ids",
    [
        {"idempotency_key": "17.4-retry"},
        {"event_uuid": "14.8-uuid"},
        {"idempotency_key": "17.4-retry", "event_uuid": "14.8-uuid"},
    ],
    ids=["idempotency-key", "event-uuid", "both"],
)
def test_redelivery_is_acknowledged_and_not_stored_or_queued_again(
    client: TestClient,
    database: Database,
    redis_server: redis.Redis,
    gitlab_samples: Path,
    ids: dict[str, str],
) -> None:
    body = sample(gitlab_samples, "push-hook.json")
    first = client.post(URL, content=body, headers=gitlab_headers(**ids))
    again = client.post(URL, content=body, headers=gitlab_headers(**ids))
    assert first.status_code == 202, first.text
    assert again.status_code == 200, again.text
    assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    [event] = stored_events(database)
    assert event.delivery_id == ids.get("idempotency_key", ids.get("event_uuid"))
    assert len(queued_tasks(redis_server)) == 1


@pytest.mark.usefixtures("registered")
def test_old_gitlab_without_delivery_ids_is_told_apart_by_its_body(
    client: TestClient, database: Database, redis_server: redis.Redis, gitlab_samples: Path
) -> None:
    body = sample(gitlab_samples, "push-hook.json")
    headers = gitlab_headers()
    del headers["Idempotency-Key"]
    first = client.post(URL, content=body, headers=headers)
    again = client.post(URL, content=body, headers=headers)
    other = body.replace(b'"total_commits_count": 4', b'"total_commits_count": 2')
    assert other != body
    different = client.post(URL, content=other, headers=headers)

    assert (first.status_code, again.status_code, different.status_code) == (202, 200, 202)
    assert [event.delivery_id for event in stored_events(database)] == [
        "sha256:" + hashlib.sha256(body).hexdigest(),
        "sha256:" + hashlib.sha256(other).hexdigest(),
    ]
    assert len(queued_tasks(redis_server)) == 2


@pytest.mark.usefixtures("registered")
def test_project_paths_match_case_insensitively(
    client: TestClient, database: Database, gitlab_samples: Path
) -> None:
    document = json.loads(sample(gitlab_samples, "push-hook.json"))
    document["project"]["path_with_namespace"] = "Mike/Diaspora"
    body = json.dumps(document).encode()
    assert client.post(URL, content=body, headers=gitlab_headers()).status_code == 202


def _push_without_project(gitlab_samples: Path) -> bytes:
    document = json.loads(sample(gitlab_samples, "push-hook.json"))
    del document["project"]
    return json.dumps(document).encode()


BAD_REQUESTS = [
    pytest.param({"token": "not the secret at all"}, 401, "does not match", id="wrong-token"),
    pytest.param({"token": None}, 401, "X-Gitlab-Token header is required", id="no-token"),
    pytest.param({"token": ""}, 401, "X-Gitlab-Token header is required", id="empty-token"),
    pytest.param(
        {"token": "wrong", "event": "Merge Request Hook", "name": "merge-request-hook-open.json"},
        401,
        "does not match",
        id="wrong-token-on-a-dropped-event",
    ),
    pytest.param({"event": None}, 400, "X-Gitlab-Event header is required", id="no-event"),
    pytest.param({"body": b"{not json"}, 400, "not valid JSON", id="not-json"),
    pytest.param({"body": b"[]"}, 400, "JSON object", id="json-array"),
    pytest.param({"body": b""}, 400, "not valid JSON", id="empty-body"),
    pytest.param(
        {"body": "no-project"}, 400, "payload has no project.path_with_namespace", id="no-project"
    ),
    pytest.param(
        {"body": b'{"object_kind": "push", "project": {"path_with_namespace": "nobody/nothing"}}'},
        401,
        "X-Gitlab-Token does not match: the repository is not registered here",
        id="unknown-project",
    ),
]


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize(("change", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_a_clear_error_and_leave_no_row(
    client: TestClient,
    database: Database,
    redis_server: redis.Redis,
    gitlab_samples: Path,
    change: dict[str, object],
    status: int,
    message: str,
) -> None:
    body = change.get("body", sample(gitlab_samples, str(change.get("name", "push-hook.json"))))
    if body == "no-project":
        body = _push_without_project(gitlab_samples)
    assert isinstance(body, bytes)
    token = change.get("token", SECRET)
    assert token is None or isinstance(token, str)
    headers = gitlab_headers(event=str(change.get("event", "Push Hook")), token=token)
    if "event" in change and change["event"] is None:
        del headers["X-Gitlab-Event"]

    response = client.post(URL, content=body, headers=headers)

    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert stored_events(database) == []
    assert queued_tasks(redis_server) == []


@pytest.mark.usefixtures("registered")
def test_a_dropped_event_that_names_no_project_is_acknowledged_unchecked(
    client: TestClient, database: Database, redis_server: redis.Redis, gitlab_samples: Path
) -> None:
    # Older GitLab's Job Hooks name no project: there is no secret to check
    # the token against, and nothing is stored for them anyway.
    body = sample(gitlab_samples, "job-hook-script-failure.json")
    response = client.post(URL, content=body, headers=gitlab_headers(event="Job Hook", token="x"))
    assert response.status_code == 202
    assert response.json() == {"status": "ignored", "event_id": None}
    assert stored_events(database) == []
    # A token is still required.
    refused = client.post(URL, content=body, headers=gitlab_headers(event="Job Hook", token=None))
    assert refused.status_code == 401


@pytest.mark.usefixtures("registered")
def test_repository_without_secret_refuses(
    client: TestClient, database: Database, gitlab_samples: Path
) -> None:
    with database.session() as session:
        repository = repos.find_repository(
            session, provider=Provider.GITLAB, full_name="mike/diaspora"
        )
        assert repository is not None
        repository.webhook_secret_hash = None
    body = sample(gitlab_samples, "push-hook.json")
    response = client.post(URL, content=body, headers=gitlab_headers())
    # The answer to a wrong token: nobody learns that the repository exists.
    wrong = client.post(URL, content=body, headers=gitlab_headers(token="x" * 20))
    assert (response.status_code, response.json()) == (wrong.status_code, wrong.json())
    assert response.status_code == 401
    assert stored_events(database) == []


def test_a_github_repository_of_the_same_name_is_not_a_gitlab_project(
    client: TestClient, database: Database, gitlab_samples: Path
) -> None:
    with database.session() as session:
        repos.add_repository(
            session, provider=Provider.GITHUB, full_name="mike/diaspora", webhook_secret=SECRET
        )
    body = sample(gitlab_samples, "push-hook.json")
    response = client.post(URL, content=body, headers=gitlab_headers())
    assert response.status_code == 401
    assert "X-Gitlab-Token does not match" in response.json()["detail"]
    assert stored_events(database) == []


@pytest.mark.usefixtures("registered")
def test_a_project_in_nested_groups_is_found(
    client: TestClient, database: Database, redis_server: redis.Redis, gitlab_samples: Path
) -> None:
    document = json.loads(sample(gitlab_samples, "push-hook.json"))
    document["project"]["path_with_namespace"] = "redhat/centos-stream/rpms/luksmeta"
    body = json.dumps(document).encode()
    response = client.post(URL, content=body, headers=gitlab_headers())
    assert response.status_code == 202, response.text
    [event] = stored_events(database)
    with database.session() as session:
        repository = repos.find_repository(
            session, provider=Provider.GITLAB, full_name="RedHat/CentOS-Stream/rpms/luksmeta"
        )
        assert repository is not None
        assert (repository.owner, repository.name) == ("redhat/centos-stream/rpms", "luksmeta")
        assert event.repository_id == repository.id


def test_nested_names_are_for_gitlab_and_generic_not_github(database: Database) -> None:
    with database.session() as session:
        for provider in (Provider.GITLAB, Provider.GENERIC):
            added = repos.add_repository(session, provider=provider, full_name="a/b/c")
            assert added.full_name == "a/b/c"
        with pytest.raises(repos.InvalidRepositoryName, match="only GitLab and generic"):
            repos.add_repository(session, provider=Provider.GITHUB, full_name="a/b/c")
        assert repos.add_repository(session, provider=Provider.GITHUB, full_name="a/b")


@pytest.mark.usefixtures("registered")
def test_metrics_count_gitlab_deliveries_by_result(
    client: TestClient, gitlab_samples: Path
) -> None:
    def counted(result: str) -> float:
        series = f'riskrank_webhooks_received_total{{provider="gitlab",result="{result}"}}'
        return metric_value(client.get("/metrics").text, series)

    def timed() -> float:
        series = 'riskrank_webhook_seconds_count{provider="gitlab"}'
        return metric_value(client.get("/metrics").text, series)

    before = {result: counted(result) for result in ("queued", "ignored", "rejected")}
    seconds = timed()
    push = sample(gitlab_samples, "push-hook.json")
    pipeline = sample(gitlab_samples, "pipeline-hook-mr-failed.json")
    assert client.post(URL, content=push, headers=gitlab_headers()).status_code == 202
    headers = gitlab_headers(event="Pipeline Hook")
    assert client.post(URL, content=pipeline, headers=headers).status_code == 202
    assert client.post(URL, content=push, headers=gitlab_headers(token="x")).status_code == 401

    assert {result: counted(result) - before[result] for result in before} == {
        "queued": 1,
        "ignored": 1,
        "rejected": 1,
    }
    assert timed() == seconds + 2


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize(("name", "event", "result"), SAMPLES)
def test_with_a_provider_token_finished_pipelines_are_queued_to_be_pulled(
    client: TestClient,
    database: Database,
    redis_server: redis.Redis,
    gitlab_samples: Path,
    name: str,
    event: str,
    result: str,
) -> None:
    from scheduler.models import Repository
    from scheduler.services import provider_access

    with database.session() as session:
        for repository in session.scalars(select(Repository)):
            provider_access.update_access(repository, token="glpat-token-for-tests")
    body = sample(gitlab_samples, name)
    response = client.post(URL, content=body, headers=gitlab_headers(event=event))
    assert response.status_code == 202, response.text
    # Both Pipeline Hook samples are of finished pipelines (success, failed).
    expected = "queued" if event == "Pipeline Hook" else result
    assert response.json()["status"] == expected
    if expected == "queued":
        [row] = stored_events(database)
        assert row.status is EventStatus.PENDING
        assert queued_tasks(redis_server) == [(EVENTS_PROCESS, [row.id])]
