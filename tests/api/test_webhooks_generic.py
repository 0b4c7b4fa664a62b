"""POST /webhooks/generic on real databases and a real Redis broker: one
commit from any CI, in riskrank's own body, signed with the repository's
secret."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from scheduler.db import Database
from scheduler.models import ChangedFile, CiEvent, Commit, EventStatus, FileStatus, Provider
from scheduler.queue import EVENTS_PROCESS
from scheduler.services import events, repos
from tests.helpers import SECRET, generic_headers, metric_value, queued_tasks

URL = "/webhooks/generic"
SHA = "0123456789abcdef0123456789abcdef01234567"
PARENT = "89abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture
def app_id(database: Database) -> int:
    """The generic repository acme/app, with the tests' secret."""
    with database.session() as session:
        return repos.add_repository(
            session, provider=Provider.GENERIC, full_name="acme/app", webhook_secret=SECRET
        ).id


HUNKS = [
    {"old_start": 3, "old_lines": 1, "new_start": 3, "new_lines": 4, "symbol": "windowed"},
    {"old_start": 40, "old_lines": 0, "new_start": 43, "new_lines": 0},
]


def body_of(**changes: Any) -> bytes:
    document: dict[str, Any] = {
        "repository": "acme/app",
        "commit": SHA,
        "branch": "main",
        "parents": [PARENT],
        "changed_files": [
            {
                "path": "src/a.py",
                "status": "modified",
                "additions": 4,
                "deletions": 1,
                "hunks": HUNKS,
            },
            {"path": "src/b.py", "status": "added", "additions": 10, "deletions": 0},
            {"path": "src/c.py", "status": "renamed", "old_path": "src/old_c.py"},
        ],
    }
    document.update(changes)
    return json.dumps({key: value for key, value in document.items() if value is not None}).encode()


def hunks_of(hunks: list[dict[str, Any]]) -> bytes:
    return body_of(changed_files=[{"path": "src/a.py", "hunks": hunks}])


def stored_events(database: Database) -> list[CiEvent]:
    with database.session() as session:
        return list(session.scalars(select(CiEvent).order_by(CiEvent.id)))


def test_a_generic_event_end_to_end(
    client: TestClient, database: Database, redis_server: redis.Redis, app_id: int
) -> None:
    body = body_of()
    response = client.post(URL, content=body, headers=generic_headers(body, delivery="build-7"))

    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    assert response.json() == {"status": "queued", "event_id": event_id}
    [event] = stored_events(database)
    assert (event.provider, event.event, event.status) == (
        Provider.GENERIC,
        "commit",
        EventStatus.PENDING,
    )
    assert event.delivery_id == f"{app_id}:build-7"
    assert event.payload == json.loads(body)
    assert queued_tasks(redis_server) == [(EVENTS_PROCESS, [event_id])]

    # What the worker's events.process does, twice: the second changes nothing.
    for _ in range(2):
        with database.session() as session:
            assert events.process_event(session, event_id) is EventStatus.HANDLED
    with database.session() as session:
        commit = session.scalars(select(Commit)).one()
        files = session.execute(
            select(
                ChangedFile.path,
                ChangedFile.status,
                ChangedFile.old_path,
                ChangedFile.additions,
                ChangedFile.deletions,
                ChangedFile.hunks,
            ).order_by(ChangedFile.path)
        ).all()
        head = events.pushed_head(session, event_id)
    assert (commit.sha, commit.parent_sha, commit.branch, commit.event_id) == (
        SHA,
        PARENT,
        "main",
        event_id,
    )
    assert commit.repository_id == app_id
    stored_hunks = [HUNKS[0], {**HUNKS[1], "symbol": None}]
    assert [tuple(row) for row in files] == [
        ("src/a.py", FileStatus.MODIFIED, None, 4, 1, stored_hunks),
        ("src/b.py", FileStatus.ADDED, None, 10, 0, None),
        ("src/c.py", FileStatus.RENAMED, "src/old_c.py", None, None, None),
    ]
    assert head == commit.id


def test_delivery_id_from_the_body_and_redelivery(
    client: TestClient, database: Database, redis_server: redis.Redis, app_id: int
) -> None:
    body = body_of(delivery_id="run-1")
    first = client.post(URL, content=body, headers=generic_headers(body))
    again = client.post(URL, content=body, headers=generic_headers(body))
    assert first.status_code == 202, first.text
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    [event] = stored_events(database)
    assert event.delivery_id == f"{app_id}:run-1"
    assert len(queued_tasks(redis_server)) == 1


def test_without_a_delivery_id_the_same_body_is_the_same_event(
    client: TestClient, database: Database, redis_server: redis.Redis, app_id: int
) -> None:
    body = body_of()
    other = body_of(branch="release")
    responses = [
        client.post(URL, content=content, headers=generic_headers(content))
        for content in (body, body, other)
    ]
    assert [response.status_code for response in responses] == [202, 200, 202]
    assert [event.delivery_id for event in stored_events(database)] == [
        f"{app_id}:sha256:{hashlib.sha256(body).hexdigest()}",
        f"{app_id}:sha256:{hashlib.sha256(other).hexdigest()}",
    ]
    assert len(queued_tasks(redis_server)) == 2


def test_two_repositories_may_use_the_same_delivery_ids(
    client: TestClient, database: Database, app_id: int
) -> None:
    with database.session() as session:
        repos.add_repository(
            session, provider=Provider.GENERIC, full_name="acme/other", webhook_secret=SECRET
        )
    for name in ("acme/app", "acme/other"):
        body = body_of(repository=name)
        response = client.post(URL, content=body, headers=generic_headers(body, delivery="1"))
        assert response.status_code == 202, response.text
    assert len(stored_events(database)) == 2


def test_a_form_content_type_is_read_as_json(
    client: TestClient, database: Database, app_id: int
) -> None:
    # What `curl -d @event.json` sends without -H 'Content-Type: ...'.
    body = body_of()
    headers = generic_headers(body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    assert client.post(URL, content=body, headers=headers).status_code == 202


def test_a_nested_repository_name(client: TestClient, database: Database) -> None:
    with database.session() as session:
        repos.add_repository(
            session, provider=Provider.GENERIC, full_name="org/project/app", webhook_secret=SECRET
        )
    body = body_of(repository="Org/Project/App")
    assert client.post(URL, content=body, headers=generic_headers(body)).status_code == 202


BAD_REQUESTS = [
    pytest.param({"secret": "not the secret at all"}, 401, "does not match", id="wrong-signature"),
    pytest.param({"signature": "sha1=abc"}, 401, "sha256=", id="sha1-only"),
    pytest.param(
        {"signature": None}, 400, "X-Riskrank-Signature-256 header is required", id="unsigned"
    ),
    pytest.param({"body": b"{not json"}, 400, "not valid JSON", id="not-json"),
    pytest.param({"body": b'["acme/app"]'}, 400, "JSON object", id="json-array"),
    pytest.param(
        {"body": body_of(repository=None)},
        400,
        "repository: a string OWNER/NAME is required",
        id="no-repository",
    ),
    pytest.param(
        {"body": body_of(repository="app")}, 400, "'app' is not OWNER/NAME", id="bad-repository"
    ),
    pytest.param({"body": body_of(commit=None)}, 400, "commit: Field required", id="no-commit"),
    pytest.param(
        {"body": body_of(commit="HEAD")},
        400,
        "commit: 'HEAD' is not a commit id: give the full 40 (or 64) hex digits",
        id="commit-HEAD",
    ),
    pytest.param(
        {"body": body_of(commit="main")}, 400, "commit: 'main' is not a commit id", id="branch"
    ),
    pytest.param(
        {"body": body_of(commit=SHA[:7])},
        400,
        f"commit: '{SHA[:7]}' is not a commit id (7 hex digits): give the full 40",
        id="short-sha",
    ),
    pytest.param(
        {"body": body_of(commit=SHA + "0")},
        400,
        "is not a commit id (41 hex digits)",
        id="41-hex",
    ),
    pytest.param(
        {"body": body_of(parents=["abc"])}, 400, "parents[0]: 'abc' is not", id="bad-parent"
    ),
    pytest.param(
        {"body": body_of(changed_files=[{"path": "a.py", "status": "touched"}])},
        400,
        "changed_files[0].status: Input should be 'added', 'modified'",
        id="bad-status",
    ),
    pytest.param(
        {"body": body_of(changed_file=[])}, 400, "changed_file: unknown field", id="unknown-key"
    ),
    pytest.param(
        {"body": hunks_of([{**HUNKS[0], "new_start": -3}])},
        422,
        "changed_files[0].hunks[0].new_start: Input should be greater than or equal to 0",
        id="negative-hunk-line",
    ),
    pytest.param(
        {"body": hunks_of([HUNKS[1], {**HUNKS[0], "old_lines": "1"}])},
        400,
        "changed_files[0].hunks[1].old_lines: Input should be a valid integer",
        id="hunk-line-as-text",
    ),
    pytest.param(
        {"body": hunks_of([{**HUNKS[0], "symbol": "s" * 201}])},
        422,
        "changed_files[0].hunks[0].symbol: String should have at most 200 characters",
        id="long-symbol",
    ),
    pytest.param(
        {"body": hunks_of([HUNKS[0]] * 101)},
        422,
        "changed_files[0].hunks: List should have at most 100 items",
        id="too-many-hunks",
    ),
    pytest.param(
        {"delivery": "x" * 201},
        422,
        "X-Riskrank-Delivery: must be at most 200 characters",
        id="long-delivery-header",
    ),
    pytest.param(
        {"body": body_of(repository="nobody/nothing")},
        401,
        "X-Riskrank-Signature-256 does not match: the repository is not registered here",
        id="unknown-repository",
    ),
]


@pytest.mark.usefixtures("app_id")
@pytest.mark.parametrize(("change", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_a_clear_error_and_leave_no_row(
    client: TestClient,
    database: Database,
    redis_server: redis.Redis,
    change: dict[str, Any],
    status: int,
    message: str,
) -> None:
    body = change.get("body") or body_of()
    headers = generic_headers(
        body, secret=change.get("secret", SECRET), delivery=change.get("delivery")
    )
    if "signature" in change:
        if change["signature"] is None:
            del headers["X-Riskrank-Signature-256"]
        else:
            headers["X-Riskrank-Signature-256"] = change["signature"]

    response = client.post(URL, content=body, headers=headers)

    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert stored_events(database) == []
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Commit)) == 0
    assert queued_tasks(redis_server) == []


def test_the_body_is_checked_only_once_the_signature_is(
    client: TestClient, database: Database, app_id: int
) -> None:
    # A stranger learns nothing about a registered repository's events.
    body = body_of(commit="HEAD")
    response = client.post(URL, content=body, headers=generic_headers(body, secret="x" * 20))
    assert response.status_code == 401


def test_repository_without_secret_refuses(
    client: TestClient, database: Database, app_id: int
) -> None:
    with database.session() as session:
        repository = repos.find_repository(session, provider=Provider.GENERIC, full_name="acme/app")
        assert repository is not None
        repository.webhook_secret = None
    body = body_of()
    response = client.post(URL, content=body, headers=generic_headers(body))
    # The answer to a wrong signature: nobody learns that the repository exists.
    wrong = client.post(URL, content=body, headers=generic_headers(body, secret="x" * 20))
    assert (response.status_code, response.json()) == (wrong.status_code, wrong.json())
    assert response.status_code == 401
    assert stored_events(database) == []


@pytest.mark.usefixtures("app_id")
def test_metrics_count_generic_events(client: TestClient) -> None:
    def counted(result: str) -> float:
        series = f'riskrank_webhooks_received_total{{provider="generic",result="{result}"}}'
        return metric_value(client.get("/metrics").text, series)

    before = {result: counted(result) for result in ("queued", "duplicate", "rejected")}
    body = body_of()
    for _ in range(2):
        client.post(URL, content=body, headers=generic_headers(body))
    client.post(URL, content=body, headers=generic_headers(body, secret="y" * 20))
    assert {result: counted(result) - before[result] for result in before} == {
        "queued": 1,
        "duplicate": 1,
        "rejected": 1,
    }
