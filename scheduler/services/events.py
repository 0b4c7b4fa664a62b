"""CI events: stored once as they arrive, then turned into commits and files."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from scheduler.ingest import github
from scheduler.ingest.errors import MalformedPayload
from scheduler.models import ChangedFile, CiEvent, Commit, EventStatus, Provider, Repository
from scheduler.models.base import utcnow
from scheduler.services import retry
from scheduler.services.sql import insert_one_ignoring, insert_rows_ignoring

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredEvent:
    id: int
    created: bool  # False: a redelivery of an event already stored


def store_event(
    session: Session,
    *,
    repository: Repository,
    provider: Provider,
    delivery_id: str,
    event: str,
    payload: dict[str, Any],
    status: EventStatus = EventStatus.PENDING,
) -> StoredEvent:
    """Record a delivery once; a second delivery with the same id is a no-op."""
    action = payload.get("action")
    now = utcnow()
    inserted = insert_one_ignoring(
        session,
        CiEvent,
        {
            "provider": provider,
            "delivery_id": delivery_id,
            "event": event,
            "action": action if isinstance(action, str) else None,
            "repository_id": repository.id,
            "payload": payload,
            "status": status,
            "received_at": now,
            "handled_at": now if status is not EventStatus.PENDING else None,
            "attempts": 0,
        },
        conflict=["provider", "delivery_id"],
        returning=CiEvent.id,
    )
    if inserted is not None:
        return StoredEvent(id=inserted, created=True)
    existing = session.scalar(
        select(CiEvent.id).where(CiEvent.provider == provider, CiEvent.delivery_id == delivery_id)
    )
    assert existing is not None, "ON CONFLICT DO NOTHING without a conflicting row"
    return StoredEvent(id=existing, created=False)


@dataclass(frozen=True)
class PushResult:
    commits: int
    changed_files: int


def _store_push(session: Session, event: CiEvent, push: github.Push) -> PushResult:
    if not push.commits:
        return PushResult(commits=0, changed_files=0)
    repository_id = event.repository_id
    insert_rows_ignoring(
        session,
        Commit,
        [
            {
                "repository_id": repository_id,
                "sha": commit.sha,
                "parent_sha": commit.parent_sha,
                "branch": push.branch,
                "author_name": commit.author_name,
                "author_time": commit.author_time,
                "message": commit.message,
                "event_id": event.id,
                "created_at": utcnow(),
            }
            for commit in push.commits
        ],
        conflict=["repository_id", "sha"],
    )
    rows = session.execute(
        select(Commit.sha, Commit.id).where(
            Commit.repository_id == repository_id,
            Commit.sha.in_([commit.sha for commit in push.commits]),
        )
    )
    ids = {sha: commit_id for sha, commit_id in rows}
    files = [
        {"commit_id": ids[commit.sha], "path": change.path, "status": change.status}
        for commit in push.commits
        for change in commit.files
    ]
    insert_rows_ignoring(session, ChangedFile, files, conflict=["commit_id", "path"])
    return PushResult(commits=len(ids), changed_files=len(files))


def _handle_github_push(session: Session, event: CiEvent) -> None:
    push = github.parse_push(event.payload)
    result = _store_push(session, event, push)
    log.info(
        "event %s: push to %s, %d commits, %d changed files",
        event.id,
        push.ref,
        result.commits,
        result.changed_files,
    )
    default_branch = (event.payload.get("repository") or {}).get("default_branch")
    if isinstance(default_branch, str) and event.repository_id is not None:
        session.execute(
            update(Repository)
            .where(Repository.id == event.repository_id)
            .values(default_branch=default_branch)
        )


Handler = Callable[[Session, CiEvent], None]

HANDLERS: dict[tuple[Provider, str], Handler] = {
    (Provider.GITHUB, github.PUSH): _handle_github_push,
}


def process_event(session: Session, event_id: int) -> EventStatus | None:
    """Turn a stored event into rows. Safe to run any number of times: the
    row lock serialises concurrent deliveries, and a handled event is left
    alone. Returns the event's status, or None if there is no such event.

    A payload that cannot be understood fails the event at once; any other
    error propagates, so the caller can record it and the sweeper retry."""
    event = session.get(CiEvent, event_id, with_for_update=True)
    if event is None:
        log.warning("event %s does not exist", event_id)
        return None
    if event.status is not EventStatus.PENDING:
        return event.status
    event.attempts += 1
    handler = HANDLERS.get((event.provider, event.event))
    if handler is None:
        event.status = EventStatus.IGNORED
    else:
        try:
            with session.begin_nested():
                handler(session, event)
        except MalformedPayload as error:
            event.status = EventStatus.FAILED
            event.error = f"malformed payload: {error.message}"
        else:
            event.status = EventStatus.HANDLED
            event.error = None
    event.handled_at = utcnow()
    return event.status


def record_event_error(
    session: Session, event_id: int, *, error: str, max_attempts: int
) -> EventStatus | None:
    """Note why processing failed; give up once the attempts are spent."""
    event = session.get(CiEvent, event_id, with_for_update=True)
    if event is None or event.status is not EventStatus.PENDING:
        return None if event is None else event.status
    if retry.count_failure(event, error=error, max_attempts=max_attempts):
        event.status = EventStatus.FAILED
        event.handled_at = utcnow()
    return event.status


def claim_unhandled_events(
    session: Session, *, older_than: timedelta, max_attempts: int, limit: int = 500
) -> list[int]:
    """Pending events nobody took up in time, to queue again."""
    return retry.claim_stale(
        session, CiEvent, older_than=older_than, max_attempts=max_attempts, limit=limit
    )


def pushed_head(session: Session, event_id: int) -> int | None:
    """The commit a handled push left its branch at (what CI builds next)."""
    event = session.get(CiEvent, event_id)
    if event is None or event.status is not EventStatus.HANDLED or event.event != github.PUSH:
        return None
    after = event.payload.get("after")
    if not isinstance(after, str) or event.repository_id is None:
        return None
    return session.scalar(
        select(Commit.id).where(Commit.repository_id == event.repository_id, Commit.sha == after)
    )
