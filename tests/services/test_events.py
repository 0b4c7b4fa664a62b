"""Events become commits and changed files, once, on both backends."""

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.db import Database
from scheduler.models import ChangedFile, CiEvent, Commit, EventStatus, Provider, Repository
from scheduler.models.base import utcnow
from scheduler.services import events, repos


def add_repo(database: Database, full_name: str) -> int:
    with database.session() as session:
        return repos.add_repository(session, provider=Provider.GITHUB, full_name=full_name).id


def store(
    database: Database, payload: dict[str, Any], *, delivery: str, event: str = "push"
) -> int:
    with database.session() as session:
        repository = repos.find_repository(
            session, provider=Provider.GITHUB, full_name=payload["repository"]["full_name"]
        )
        assert repository is not None
        return events.store_event(
            session,
            repository_id=repository.id,
            provider=Provider.GITHUB,
            delivery_id=delivery,
            event=event,
            payload=payload,
        ).id


def process(database: Database, event_id: int) -> EventStatus | None:
    with database.session() as session:
        return events.process_event(session, event_id)


def counts(database: Database) -> tuple[int, int]:
    with database.session() as session:
        return (
            session.scalar(select(func.count()).select_from(Commit)) or 0,
            session.scalar(select(func.count()).select_from(ChangedFile)) or 0,
        )


def load(directory: Path, name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((directory / name).read_text())
    return document


def test_push_becomes_commits_and_files_once(database: Database, github_samples: Path) -> None:
    add_repo(database, "binkkatal/sample_app")
    event_id = store(database, load(github_samples, "push-normal-branch.json"), delivery="d1")

    assert process(database, event_id) is EventStatus.HANDLED
    assert counts(database) == (1, 2)
    # Any number of deliveries of the task change nothing more.
    assert process(database, event_id) is EventStatus.HANDLED
    assert counts(database) == (1, 2)

    with database.session() as session:
        commit = session.scalars(select(Commit)).one()
        assert commit.sha == "fd489864e7642b48eaad6e3f155c10e46810ec72"
        assert commit.parent_sha == "737d38c599c1b2991664dfc6155d6bf516fcce36"
        assert commit.branch == "master"
        assert commit.author_time is not None
        assert commit.author_time.isoformat() == "2018-06-29T14:04:13+00:00"
        assert commit.message == "test a push event"
        assert commit.event_id == event_id
        event = session.get(CiEvent, event_id)
        assert event is not None
        assert event.handled_at is not None
        assert event.attempts == 1
        assert event.error is None
        repository = session.scalars(select(Repository)).one()
        assert repository.default_branch == "master"


def test_the_same_commit_pushed_twice_is_one_row(database: Database, github_samples: Path) -> None:
    add_repo(database, "Codertocat/Hello-World")
    payload = load(github_samples, "push-branch-created.json")
    first = store(database, payload, delivery="a")
    payload["ref"] = "refs/heads/copy"
    second = store(database, payload, delivery="b")
    assert process(database, first) is EventStatus.HANDLED
    assert process(database, second) is EventStatus.HANDLED
    assert counts(database) == (1, 1)


@pytest.mark.parametrize(
    ("name", "full_name", "expected"),
    [
        ("push-normal-branch.json", "binkkatal/sample_app", (1, 2)),
        ("push-branch-created.json", "Codertocat/Hello-World", (1, 1)),
        ("push-forced.json", "flightctl/flightctl", (1, 1)),
        ("push-tag-deleted.json", "Codertocat/Hello-World", (0, 0)),
    ],
)
def test_every_push_sample(
    database: Database, github_samples: Path, name: str, full_name: str, expected: tuple[int, int]
) -> None:
    add_repo(database, full_name)
    event_id = store(database, load(github_samples, name), delivery=name)
    assert process(database, event_id) is EventStatus.HANDLED
    assert counts(database) == expected


def test_an_event_riskrank_does_not_process_is_ignored(
    database: Database, github_samples: Path
) -> None:
    add_repo(database, "Codertocat/Hello-World")
    payload = load(github_samples, "check_run-completed-failure.json")
    event_id = store(database, payload, delivery="check", event="check_run")
    assert process(database, event_id) is EventStatus.IGNORED
    assert counts(database) == (0, 0)


def test_a_pull_request_without_a_token_is_its_head_commit(
    database: Database, github_samples: Path
) -> None:
    add_repo(database, "Codertocat/Hello-World")
    payload = load(github_samples, "pull_request-opened.json")
    event_id = store(database, payload, delivery="pr", event="pull_request")
    assert process(database, event_id) is EventStatus.HANDLED
    assert counts(database) == (1, 0)


def test_malformed_push_fails_the_event_and_leaves_no_rows(database: Database) -> None:
    add_repo(database, "o/r")
    payload = {
        "ref": "refs/heads/main",
        "after": "a" * 40,
        "repository": {"full_name": "o/r"},
        "commits": [{"id": "a" * 40, "added": ["x.py"]}, {"message": "no id"}],
    }
    event_id = store(database, payload, delivery="bad")
    assert process(database, event_id) is EventStatus.FAILED
    assert counts(database) == (0, 0)
    with database.session() as session:
        event = session.get(CiEvent, event_id)
        assert event is not None
        assert event.error is not None
        assert "every commit must be an object with a string id" in event.error


def test_errors_are_recorded_until_the_attempts_run_out(database: Database) -> None:
    add_repo(database, "o/r")
    event_id = store(database, {"repository": {"full_name": "o/r"}}, delivery="x")
    for attempt in (1, 2):
        with database.session() as session:
            status = events.record_event_error(
                session, event_id, error=f"boom {attempt}", max_attempts=3
            )
        assert status is EventStatus.PENDING
    with database.session() as session:
        status = events.record_event_error(session, event_id, error="boom 3", max_attempts=3)
    assert status is EventStatus.FAILED
    with database.session() as session:
        event = session.get(CiEvent, event_id)
        assert event is not None
        assert (event.attempts, event.error) == (3, "boom 3")


def test_a_redelivery_is_stored_once(database: Database) -> None:
    add_repo(database, "o/r")
    payload = {"repository": {"full_name": "o/r"}}
    with database.session() as session:
        repository = repos.find_repository(session, provider=Provider.GITHUB, full_name="O/R")
        assert repository is not None
        first = events.store_event(
            session,
            repository_id=repository.id,
            provider=Provider.GITHUB,
            delivery_id="same",
            event="push",
            payload=payload,
        )
        again = events.store_event(
            session,
            repository_id=repository.id,
            provider=Provider.GITHUB,
            delivery_id="same",
            event="push",
            payload=payload,
        )
    assert first.created
    assert not again.created
    assert again.id == first.id


def test_sweeper_claims_pending_events_queued_before_the_cutoff_once(database: Database) -> None:
    add_repo(database, "o/r")
    payload = {"repository": {"full_name": "o/r"}}
    old = store(database, payload, delivery="old")
    fresh = store(database, payload, delivery="fresh")
    done = store(database, payload, delivery="done")
    exhausted = store(database, payload, delivery="exhausted")
    with database.session() as session:
        for event_id in (old, done, exhausted):
            event = session.get(CiEvent, event_id)
            assert event is not None
            event.received_at = utcnow() - timedelta(minutes=10)
        session.get_one(CiEvent, done).status = EventStatus.HANDLED
        session.get_one(CiEvent, exhausted).attempts = 5

    def claim() -> list[int]:
        with database.session() as session:
            return events.claim_unhandled_events(
                session, queued_before=utcnow() - timedelta(minutes=1), max_attempts=5
            )

    assert claim() == [old]
    # Just queued again: left alone until the interval has passed once more.
    assert claim() == []
    assert fresh not in claim()
