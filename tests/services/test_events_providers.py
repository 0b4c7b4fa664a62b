"""GitLab pushes and generic commits become commits and changed files, once,
on both backends, and leave the head that the worker queues for scoring."""

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.db import Database
from scheduler.models import ChangedFile, CiEvent, Commit, EventStatus, Provider, Repository
from scheduler.services import events, repos

SHA = "0123456789abcdef0123456789abcdef01234567"
CHILD = "fedcba9876543210fedcba9876543210fedcba98"


def add_repo(database: Database, provider: Provider, full_name: str) -> int:
    with database.session() as session:
        return repos.add_repository(session, provider=provider, full_name=full_name).id


def store(
    database: Database,
    repository_id: int,
    provider: Provider,
    payload: dict[str, Any],
    *,
    delivery: str,
    event: str,
) -> int:
    with database.session() as session:
        repository = session.get_one(Repository, repository_id)
        return events.store_event(
            session,
            repository_id=repository.id,
            provider=provider,
            delivery_id=delivery,
            event=event,
            payload=payload,
        ).id


def process(database: Database, event_id: int) -> EventStatus | None:
    with database.session() as session:
        return events.process_event(session, event_id)


def head_sha(database: Database, event_id: int) -> str | None:
    with database.session() as session:
        head = events.pushed_head(session, event_id)
        return None if head is None else session.get_one(Commit, head).sha


def counts(database: Database) -> tuple[int, int]:
    with database.session() as session:
        return (
            session.scalar(select(func.count()).select_from(Commit)) or 0,
            session.scalar(select(func.count()).select_from(ChangedFile)) or 0,
        )


def load(directory: Path, name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((directory / name).read_text())
    return document


# --- GitLab -----------------------------------------------------------------


def test_gitlab_push_sample_becomes_commits_and_files_once(
    database: Database, gitlab_samples: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repository_id = add_repo(database, Provider.GITLAB, "mike/diaspora")
    payload = load(gitlab_samples, "push-hook.json")
    event_id = store(
        database, repository_id, Provider.GITLAB, payload, delivery="a", event="Push Hook"
    )

    with caplog.at_level(logging.WARNING, logger="scheduler.services.events"):
        assert process(database, event_id) is EventStatus.HANDLED
    assert "GitLab listed 2 of the push's 4 commits" in caplog.text
    assert counts(database) == (2, 4)
    # A re-run of the task, and a redelivery stored under another id, change nothing.
    assert process(database, event_id) is EventStatus.HANDLED
    again = store(
        database, repository_id, Provider.GITLAB, payload, delivery="b", event="Push Hook"
    )
    assert process(database, again) is EventStatus.HANDLED
    assert counts(database) == (2, 4)

    assert head_sha(database, event_id) == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    with database.session() as session:
        rows = session.execute(
            select(Commit.sha, Commit.parent_sha, Commit.author_name, Commit.event_id).order_by(
                Commit.author_time
            )
        ).all()
        assert [tuple(row) for row in rows] == [
            ("b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327", None, "Jordi Mallach", event_id),
            (
                "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
                "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
                "GitLab dev user",
                event_id,
            ),
        ]
        paths = session.execute(
            select(Commit.sha, ChangedFile.path, ChangedFile.status)
            .join(ChangedFile, ChangedFile.commit_id == Commit.id)
            .order_by(Commit.author_time, ChangedFile.path)
        ).all()
        assert [(sha[:7], path, status.value) for sha, path, status in paths] == [
            ("b6568db", "CHANGELOG", "added"),
            ("b6568db", "app/controller/application.rb", "modified"),
            ("da15608", "CHANGELOG", "added"),
            ("da15608", "app/controller/application.rb", "modified"),
        ]
        assert session.get_one(Repository, repository_id).default_branch == "master"


def _gitlab_push(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "object_kind": "push",
        "before": "b" * 40,
        "after": CHILD,
        "checkout_sha": CHILD,
        "ref": "refs/heads/feature",
        "project": {"path_with_namespace": "group/sub/app", "default_branch": "main"},
        "commits": [{"id": CHILD, "message": "m", "modified": ["src/a.py"]}],
        "total_commits_count": 1,
    }
    payload.update(changes)
    return payload


def test_gitlab_branch_deletion_is_handled_with_nothing_to_score(database: Database) -> None:
    repository_id = add_repo(database, Provider.GITLAB, "group/sub/app")
    payload = _gitlab_push(after="0" * 40, checkout_sha=None, commits=[], total_commits_count=0)
    event_id = store(
        database, repository_id, Provider.GITLAB, payload, delivery="d", event="Push Hook"
    )
    assert process(database, event_id) is EventStatus.HANDLED
    assert counts(database) == (0, 0)
    assert head_sha(database, event_id) is None


def test_gitlab_branch_created_at_a_known_commit_scores_that_commit(database: Database) -> None:
    repository_id = add_repo(database, Provider.GITLAB, "group/sub/app")
    first = store(
        database, repository_id, Provider.GITLAB, _gitlab_push(), delivery="1", event="Push Hook"
    )
    assert process(database, first) is EventStatus.HANDLED
    created = _gitlab_push(
        before="0" * 40, ref="refs/heads/copy", commits=[], total_commits_count=0
    )
    second = store(
        database, repository_id, Provider.GITLAB, created, delivery="2", event="Push Hook"
    )
    assert process(database, second) is EventStatus.HANDLED
    assert counts(database) == (1, 1)
    assert head_sha(database, second) == CHILD


def test_gitlab_events_other_than_pushes_are_not_processed(
    database: Database, gitlab_samples: Path
) -> None:
    repository_id = add_repo(database, Provider.GITLAB, "jsmith/example")
    payload = load(gitlab_samples, "tag-push-hook-created.json")
    event_id = store(
        database, repository_id, Provider.GITLAB, payload, delivery="t", event="Tag Push Hook"
    )
    assert process(database, event_id) is EventStatus.IGNORED
    assert counts(database) == (0, 0)
    assert head_sha(database, event_id) is None


def test_malformed_gitlab_push_fails_the_event_and_leaves_no_rows(database: Database) -> None:
    repository_id = add_repo(database, Provider.GITLAB, "group/sub/app")
    payload = _gitlab_push(commits=[{"id": CHILD, "added": ["x.py"]}, {"message": "no id"}])
    event_id = store(
        database, repository_id, Provider.GITLAB, payload, delivery="x", event="Push Hook"
    )
    assert process(database, event_id) is EventStatus.FAILED
    assert counts(database) == (0, 0)
    with database.session() as session:
        error = session.get_one(CiEvent, event_id).error
    assert error is not None
    assert "commits[1]: every commit must be an object with a string id" in error


# --- generic ----------------------------------------------------------------


def _generic(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "repository": "acme/app",
        "commit": SHA,
        "branch": "main",
        "changed_files": [{"path": "src/a.py", "status": "added", "additions": 5, "deletions": 0}],
    }
    payload.update(changes)
    return payload


def test_generic_commits_chain_and_each_is_its_own_head(database: Database) -> None:
    repository_id = add_repo(database, Provider.GENERIC, "acme/app")
    first = store(
        database, repository_id, Provider.GENERIC, _generic(), delivery="1", event="commit"
    )
    child = _generic(
        commit=CHILD.upper(),
        parents=[SHA],
        changed_files=[
            {"path": "src/a.py", "status": "modified", "additions": 1, "deletions": 1},
            {"path": "docs/b.md", "status": "removed", "additions": 0, "deletions": 9},
        ],
        message="Change a",
        author="Ada",
        time="2024-05-01T12:00:00Z",
    )
    second = store(database, repository_id, Provider.GENERIC, child, delivery="2", event="commit")
    for event_id in (first, second, first, second):
        assert process(database, event_id) is EventStatus.HANDLED
    assert counts(database) == (2, 3)
    assert (head_sha(database, first), head_sha(database, second)) == (SHA, CHILD)
    with database.session() as session:
        commit = session.scalars(select(Commit).where(Commit.sha == CHILD)).one()
        assert (commit.parent_sha, commit.branch, commit.message, commit.author_name) == (
            SHA,
            "main",
            "Change a",
            "Ada",
        )
        assert commit.author_time is not None
        assert commit.author_time.isoformat() == "2024-05-01T12:00:00+00:00"


def test_a_generic_commit_without_files_is_still_scored(database: Database) -> None:
    repository_id = add_repo(database, Provider.GENERIC, "acme/app")
    payload = {"repository": "acme/app", "commit": SHA}
    event_id = store(
        database, repository_id, Provider.GENERIC, payload, delivery="1", event="commit"
    )
    assert process(database, event_id) is EventStatus.HANDLED
    assert counts(database) == (1, 0)
    assert head_sha(database, event_id) == SHA


def test_a_malformed_generic_event_fails_with_the_reason(database: Database) -> None:
    # The endpoint refuses such a body; one stored by other means still
    # fails cleanly rather than being retried for ever.
    repository_id = add_repo(database, Provider.GENERIC, "acme/app")
    payload = _generic(commit="HEAD")
    event_id = store(
        database, repository_id, Provider.GENERIC, payload, delivery="1", event="commit"
    )
    assert process(database, event_id) is EventStatus.FAILED
    assert counts(database) == (0, 0)
    assert head_sha(database, event_id) is None
    with database.session() as session:
        error = session.get_one(CiEvent, event_id).error
    assert error is not None
    assert "commit: 'HEAD' is not a commit id" in error


# --- GitHub, through the same dispatch ---------------------------------------


def test_github_push_head_is_its_after(database: Database, github_samples: Path) -> None:
    repository_id = add_repo(database, Provider.GITHUB, "binkkatal/sample_app")
    payload = load(github_samples, "push-normal-branch.json")
    event_id = store(database, repository_id, Provider.GITHUB, payload, delivery="g", event="push")
    assert head_sha(database, event_id) is None  # not handled yet
    assert process(database, event_id) is EventStatus.HANDLED
    assert head_sha(database, event_id) == "fd489864e7642b48eaad6e3f155c10e46810ec72"
