"""POST /webhooks/github on real databases and a real Redis broker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from scheduler.api.app import create_app
from scheduler.config import Settings
from scheduler.db import Database
from scheduler.models import CiEvent, EventStatus, Provider, Repository
from scheduler.queue import EVENTS_PROCESS
from scheduler.services import repos
from tests.helpers import SECRET, github_headers, queued_tasks, sample

URL = "/webhooks/github"


@pytest.fixture
def registered(database: Database, github_samples: Path) -> int:
    """Every repository the samples name, with the tests' secret."""
    names = {
        json.loads(path.read_bytes())["repository"]["full_name"].lower()
        for path in github_samples.glob("*.json")
    }
    with database.session() as session:
        for name in sorted(names):
            repos.add_repository(
                session, provider=Provider.GITHUB, full_name=name, webhook_secret=SECRET
            )
    return len(names)


def stored_events(database: Database) -> list[CiEvent]:
    with database.session() as session:
        return list(session.scalars(select(CiEvent).order_by(CiEvent.id)))


@pytest.mark.usefixtures("registered")
def test_signed_push_is_stored_and_queued_after_commit(
    client: TestClient, database: Database, redis_server: redis.Redis, github_samples: Path
) -> None:
    body = sample(github_samples, "push-normal-branch.json")
    response = client.post(URL, content=body, headers=github_headers(body, delivery="d-1"))

    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    assert response.json() == {"status": "queued", "event_id": event_id}
    [event] = stored_events(database)
    assert (event.id, event.delivery_id, event.event) == (event_id, "d-1", "push")
    assert event.status is EventStatus.PENDING
    assert event.payload == json.loads(body)
    assert queued_tasks(redis_server) == [(EVENTS_PROCESS, [event_id])]


@pytest.mark.usefixtures("registered")
def test_form_encoded_delivery_is_accepted(
    client: TestClient, database: Database, redis_server: redis.Redis, github_samples: Path
) -> None:
    payload = sample(github_samples, "push-normal-branch.json").decode()
    body = urlencode({"payload": payload}).encode()
    headers = github_headers(body, content_type="application/x-www-form-urlencoded")
    response = client.post(URL, content=body, headers=headers)
    assert response.status_code == 202, response.text
    [event] = stored_events(database)
    assert event.payload == json.loads(payload)
    assert len(queued_tasks(redis_server)) == 1


@pytest.mark.usefixtures("registered")
def test_redelivery_is_acknowledged_and_not_stored_or_queued_again(
    client: TestClient, database: Database, redis_server: redis.Redis, github_samples: Path
) -> None:
    body = sample(github_samples, "push-normal-branch.json")
    headers = github_headers(body, delivery="same-delivery")
    first = client.post(URL, content=body, headers=headers)
    again = client.post(URL, content=body, headers=headers)
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    assert len(stored_events(database)) == 1
    assert len(queued_tasks(redis_server)) == 1


@pytest.mark.usefixtures("registered")
def test_repository_names_match_case_insensitively(
    client: TestClient, database: Database, github_samples: Path
) -> None:
    document = json.loads(sample(github_samples, "push-normal-branch.json"))
    document["repository"]["full_name"] = "BinkKatal/Sample_App"
    body = json.dumps(document).encode()
    assert client.post(URL, content=body, headers=github_headers(body)).status_code == 202


@pytest.mark.usefixtures("registered")
def test_ping_is_recorded_not_queued(
    client: TestClient, database: Database, redis_server: redis.Redis, github_samples: Path
) -> None:
    body = sample(github_samples, "ping-repository-hook.json")
    response = client.post(URL, content=body, headers=github_headers(body, event="ping"))
    assert response.status_code == 202
    assert response.json()["status"] == "recorded"
    [event] = stored_events(database)
    assert event.status is EventStatus.IGNORED
    assert queued_tasks(redis_server) == []


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize(
    ("event", "name"),
    [
        ("workflow_run", "workflow_run-completed-success.json"),
        ("check_suite", "check_suite-completed-success.json"),
        ("check_run", "check_run-completed-failure.json"),
    ],
)
def test_events_riskrank_ignores_are_acknowledged_with_nothing_queued(
    client: TestClient,
    database: Database,
    redis_server: redis.Redis,
    github_samples: Path,
    event: str,
    name: str,
) -> None:
    body = sample(github_samples, name)
    response = client.post(URL, content=body, headers=github_headers(body, event=event))
    assert response.status_code == 202
    assert response.json() == {"status": "ignored", "event_id": None}
    assert stored_events(database) == []
    assert queued_tasks(redis_server) == []


BAD_REQUESTS = [
    pytest.param({"drop": "X-Hub-Signature-256"}, 400, "X-Hub-Signature-256", id="no-signature"),
    pytest.param({"drop": "X-GitHub-Event"}, 400, "X-GitHub-Event", id="no-event-header"),
    pytest.param({"drop": "X-GitHub-Delivery"}, 400, "X-GitHub-Delivery", id="no-delivery"),
    pytest.param({"secret": "not the secret at all"}, 401, "does not match", id="wrong-signature"),
    pytest.param({"signature": "sha1=abc"}, 401, "sha256=", id="sha1-only"),
    pytest.param({"body": b"{not json"}, 400, "not valid JSON", id="not-json"),
    pytest.param({"body": b"[]"}, 400, "JSON object", id="json-array"),
    pytest.param({"body": b'{"ref": "x"}'}, 400, "repository.full_name", id="no-repository"),
    pytest.param(
        {"body": b'{"repository": {"full_name": "nobody/nothing"}}'},
        401,
        "X-Hub-Signature-256 does not match: the repository is not registered here",
        id="unknown-repository",
    ),
]


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize(("change", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_a_clear_error_and_leave_no_row(
    client: TestClient,
    database: Database,
    redis_server: redis.Redis,
    github_samples: Path,
    change: dict[str, object],
    status: int,
    message: str,
) -> None:
    body = change.get("body") or sample(github_samples, "push-normal-branch.json")
    assert isinstance(body, bytes)
    secret = change.get("secret", SECRET)
    assert isinstance(secret, str)
    headers = github_headers(body, secret=secret)
    if "signature" in change:
        headers["X-Hub-Signature-256"] = str(change["signature"])
    headers.pop(str(change.get("drop", "")), None)

    response = client.post(URL, content=body, headers=headers)

    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert stored_events(database) == []
    assert queued_tasks(redis_server) == []


@pytest.mark.usefixtures("registered")
def test_repository_without_secret_refuses(
    client: TestClient, database: Database, github_samples: Path
) -> None:
    with database.session() as session:
        repository = repos.find_repository(
            session, provider=Provider.GITHUB, full_name="binkkatal/sample_app"
        )
        assert repository is not None
        repository.webhook_secret = None
    body = sample(github_samples, "push-normal-branch.json")
    response = client.post(URL, content=body, headers=github_headers(body))
    # The answer to a wrong signature: nobody learns that the repository exists.
    wrong = client.post(URL, content=body, headers=github_headers(body, secret="x" * 20))
    assert (response.status_code, response.json()) == (wrong.status_code, wrong.json())
    assert response.status_code == 401
    assert stored_events(database) == []


def test_body_over_the_limit_is_413_declared_or_streamed(
    db_url: str, redis_url: str, database: Database, registered: int
) -> None:
    settings = Settings(database_url=db_url, broker_url=redis_url, max_body_bytes=1000)
    body = json.dumps({"repository": {"full_name": "binkkatal/sample_app"}, "x": "y" * 2000})
    with TestClient(create_app(settings)) as client:
        declared = client.post(URL, content=body.encode(), headers=github_headers(body.encode()))

        def chunks() -> Iterator[bytes]:
            # No Content-Length: the limit must hold while reading.
            for start in range(0, len(body), 500):
                yield body[start : start + 500].encode()

        streamed = client.post(URL, content=chunks(), headers=github_headers(body.encode()))
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert "over the limit of 1000 bytes" in response.json()["detail"]
    assert stored_events(database) == []


def test_webhook_accepted_while_the_broker_is_down_is_stored(
    db_url: str, database: Database, registered: int, github_samples: Path
) -> None:
    # Nothing listens on port 1: every publish fails at once.
    settings = Settings(
        database_url=db_url, broker_url="redis://127.0.0.1:1/0", publish_timeout_seconds=0.5
    )
    body = sample(github_samples, "push-normal-branch.json")
    with TestClient(create_app(settings)) as client:
        response = client.post(URL, content=body, headers=github_headers(body))
    assert response.status_code == 202, response.text
    [event] = stored_events(database)
    assert event.status is EventStatus.PENDING
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Repository)) == registered


# Every sample with the result once its repository has a provider token:
# a completed workflow_run is then stored and queued (its results are
# pulled); the others are received as without one.
WITH_TOKEN = {
    "check_run-completed-failure.json": "ignored",
    "check_suite-completed-success.json": "ignored",
    "check_suite-requested-email-special-chars.json": "ignored",
    "ping-repository-hook.json": "recorded",
    "pull_request-opened.json": "queued",
    "pull_request-synchronize.json": "queued",
    "push-branch-created.json": "queued",
    "push-forced.json": "queued",
    "push-normal-branch.json": "queued",
    "push-tag-deleted.json": "queued",
    "workflow_run-completed-success.json": "queued",
}


def test_with_a_provider_token_every_sample_is_received_as_its_kind_requires(
    client: TestClient,
    database: Database,
    redis_server: redis.Redis,
    registered: int,
    github_samples: Path,
) -> None:
    from scheduler.services import provider_access

    assert sorted(path.name for path in github_samples.glob("*.json")) == sorted(WITH_TOKEN)
    with database.session() as session:
        for repository in session.scalars(select(Repository)):
            provider_access.update_access(repository, token="ghp_token-for-tests")
    for name, result in WITH_TOKEN.items():
        body = sample(github_samples, name)
        event = name.split("-", 1)[0]
        response = client.post(URL, content=body, headers=github_headers(body, event=event))
        assert response.status_code == 202, (name, response.text)
        assert response.json()["status"] == result, name
    stored = {event.event: event.status for event in stored_events(database)}
    assert stored == {
        "ping": EventStatus.IGNORED,
        "push": EventStatus.PENDING,
        "pull_request": EventStatus.PENDING,
        "workflow_run": EventStatus.PENDING,
    }
    queued = sum(1 for result in WITH_TOKEN.values() if result == "queued")
    assert [task for task, _ in queued_tasks(redis_server)] == [EVENTS_PROCESS] * queued
