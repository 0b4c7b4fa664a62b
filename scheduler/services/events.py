"""CI events: stored once as they arrive, then turned into commits and files."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from scheduler import limits
from scheduler.ingest import generic, github, gitlab, hunks, pull_requests
from scheduler.ingest.errors import MalformedPayload
from scheduler.models import ChangedFile, CiEvent, Commit, EventStatus, Provider, Repository
from scheduler.models.base import utcnow
from scheduler.services import changes, pulls, retry
from scheduler.services.sql import insert_one_ignoring, insert_rows_ignoring

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredEvent:
    id: int
    created: bool  # False: a redelivery of an event already stored


def store_event(
    session: Session,
    *,
    repository_id: int,
    provider: Provider,
    delivery_id: str,
    event: str,
    payload: dict[str, Any],
    status: EventStatus = EventStatus.PENDING,
) -> StoredEvent:
    """Record a delivery once; a second delivery with the same id is a no-op."""
    action = payload.get("action")
    if isinstance(action, str):
        limits.text(action, "action", max_chars=limits.EVENT_CHARS)
    now = utcnow()
    inserted = insert_one_ignoring(
        session,
        CiEvent,
        {
            "provider": provider,
            "delivery_id": delivery_id,
            "event": event,
            "action": action if isinstance(action, str) else None,
            "repository_id": repository_id,
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


def _store_commits(
    session: Session,
    event: CiEvent,
    *,
    commits: Sequence[dict[str, Any]],
    files: dict[str, list[dict[str, Any]]],
) -> PushResult:
    """Insert commits (column values by name, `sha` among them) and their
    changed files (by sha); what is there already stays as it is."""
    if not commits:
        return PushResult(commits=0, changed_files=0)
    repository_id = event.repository_id
    now = utcnow()
    insert_rows_ignoring(
        session,
        Commit,
        [
            {**commit, "repository_id": repository_id, "event_id": event.id, "created_at": now}
            for commit in commits
        ],
        conflict=["repository_id", "sha"],
    )
    rows = session.execute(
        select(Commit.sha, Commit.id).where(
            Commit.repository_id == repository_id,
            Commit.sha.in_([commit["sha"] for commit in commits]),
        )
    )
    ids = {sha: commit_id for sha, commit_id in rows}
    file_rows = [
        {"commit_id": ids[sha], **change} for sha, changes in files.items() for change in changes
    ]
    insert_rows_ignoring(session, ChangedFile, file_rows, conflict=["commit_id", "path"])
    return PushResult(commits=len(ids), changed_files=len(file_rows))


def _store_push(session: Session, event: CiEvent, push: github.Push) -> PushResult:
    return _store_commits(
        session,
        event,
        commits=[
            {
                "sha": commit.sha,
                "parent_sha": commit.parent_sha,
                "branch": push.branch,
                "author_name": commit.author_name,
                "author_time": commit.author_time,
                "message": commit.message,
            }
            for commit in push.commits
        ],
        files={
            commit.sha: [{"path": change.path, "status": change.status} for change in commit.files]
            for commit in push.commits
        },
    )


def _set_default_branch(session: Session, event: CiEvent, branch: object) -> None:
    # A default branch the column cannot hold is not worth failing a push for.
    if (
        isinstance(branch, str)
        and branch
        and len(branch) <= limits.NAME_CHARS
        and event.repository_id is not None
    ):
        session.execute(
            update(Repository)
            .where(Repository.id == event.repository_id)
            .values(default_branch=branch)
        )


def _commit_id(session: Session, event: CiEvent, sha: str) -> int | None:
    return session.scalar(
        select(Commit.id).where(Commit.repository_id == event.repository_id, Commit.sha == sha)
    )


def _store_fetched(
    session: Session,
    event: CiEvent,
    fetched: changes.Fetched | None,
    *,
    head: str | None,
    branch: str | None,
) -> int:
    """What the provider's API added to a push or pull request: the commits
    its payload did not list (a comparison's; their own files are not
    known), the first parents it could not tell, and the head's files since
    the base. Returns how many files the head gained."""
    if fetched is None or head is None:
        return 0
    _store_commits(
        session,
        event,
        commits=[
            {
                "sha": commit.sha,
                "parent_sha": commit.parent_sha,
                "branch": branch,
                "author_name": commit.author_name,
                "author_time": commit.author_time,
                "message": commit.message,
            }
            for commit in fetched.commits
        ],
        files={},
    )
    for commit in fetched.commits:
        if commit.parent_sha is not None:
            session.execute(
                update(Commit)
                .where(
                    Commit.repository_id == event.repository_id,
                    Commit.sha == commit.sha,
                    Commit.parent_sha.is_(None),
                )
                .values(parent_sha=commit.parent_sha)
            )
    head_id = _commit_id(session, event, head)
    return changes.add_files(session, head_id, fetched.files) if head_id is not None else 0


def _handle_github_push(
    session: Session, event: CiEvent, fetched: changes.Fetched | None = None
) -> None:
    push = github.parse_push(event.payload)
    result = _store_push(session, event, push)
    head = event.payload.get("after")
    added = _store_fetched(
        session,
        event,
        fetched,
        head=head if isinstance(head, str) and push.commits else None,
        branch=push.branch,
    )
    log.info(
        "event %s: push to %s, %d commits, %d changed files, %d from the comparison",
        event.id,
        push.ref,
        result.commits,
        result.changed_files,
        added,
    )
    _set_default_branch(
        session, event, (event.payload.get("repository") or {}).get("default_branch")
    )


def _handle_gitlab_push(
    session: Session, event: CiEvent, fetched: changes.Fetched | None = None
) -> None:
    push = gitlab.parse_push(event.payload)
    result = _store_push(session, event, push)
    added = _store_fetched(
        session,
        event,
        fetched,
        head=gitlab.head_sha(event.payload) if push.commits else None,
        branch=push.branch,
    )
    log.info(
        "event %s: GitLab push to %s, %d commits, %d changed files, %d from the comparison",
        event.id,
        push.ref,
        result.commits,
        result.changed_files,
        added,
    )
    listed = event.payload.get("commits")
    listed_count = len(listed) if isinstance(listed, list) else 0
    total = gitlab.total_commits(event.payload)
    if total > listed_count and fetched is None:
        # GitLab lists only the newest commits of a push (at most 20): the
        # older ones are not stored, and the oldest listed one has no
        # parent, unless the comparison API (a provider token) told them.
        log.warning(
            "event %s: GitLab listed %d of the push's %d commits; only those are stored",
            event.id,
            listed_count,
            total,
        )
    _set_default_branch(session, event, gitlab.default_branch(event.payload))


def _handle_pull_request(
    session: Session, event: CiEvent, fetched: changes.Fetched | None = None
) -> None:
    """A pull (merge) request's head commit, with the files it changes
    against the merge base when the provider's API told them; without them
    the head keeps what is known (the files of its own push, if any)."""
    pull = changes.parse_pull_request(event.provider, event.payload)
    _store_commits(
        session,
        event,
        commits=[
            {
                "sha": pull.head_sha,
                "parent_sha": None,
                "branch": pull.head_branch,
                "author_name": pull.author_name,
                "author_time": pull.author_time,
                "message": pull.message,
            }
        ],
        files={},
    )
    added = _store_fetched(session, event, fetched, head=pull.head_sha, branch=pull.head_branch)
    log.info(
        "event %s: pull request %s of %s into %s, head %s, %d changed files from the API",
        event.id,
        pull.number,
        pull.head_branch,
        pull.base_branch,
        pull.head_sha,
        added,
    )


def _handle_generic_commit(
    session: Session, event: CiEvent, fetched: changes.Fetched | None = None
) -> None:
    commit = generic.parse_commit(event.payload)
    result = _store_commits(
        session,
        event,
        commits=[
            {
                "sha": commit.sha,
                "parent_sha": commit.parent_sha,
                "branch": commit.branch,
                "author_name": commit.author,
                "author_time": commit.time,
                "message": commit.message,
            }
        ],
        files={
            commit.sha: [
                {
                    "path": change.path,
                    "status": change.status,
                    "old_path": change.old_path,
                    "additions": change.additions,
                    "deletions": change.deletions,
                    "hunks": hunks.to_json(change.hunks),
                }
                for change in commit.files
            ]
        },
    )
    log.info(
        "event %s: commit %s on %s, %d changed files",
        event.id,
        commit.sha,
        commit.branch or "no branch",
        result.changed_files,
    )


Handler = Callable[[Session, CiEvent, changes.Fetched | None], None]

HANDLERS: dict[tuple[Provider, str], Handler] = {
    (Provider.GITHUB, github.PUSH): _handle_github_push,
    (Provider.GITLAB, gitlab.PUSH): _handle_gitlab_push,
    (Provider.GITHUB, pull_requests.GITHUB_EVENT): _handle_pull_request,
    (Provider.GITLAB, pull_requests.GITLAB_EVENT): _handle_pull_request,
    (Provider.GENERIC, generic.COMMIT): _handle_generic_commit,
}


def process_event(
    session: Session,
    event_id: int,
    *,
    fetched: changes.Fetched | None = None,
    note: str | None = None,
    reason: str | None = None,
) -> EventStatus | None:
    """Turn a stored event into rows. Safe to run any number of times: the
    row lock serialises concurrent deliveries, and a handled event is left
    alone. Returns the event's status, or None if there is no such event.

    `fetched`: what the provider's API said of its changes
    (scheduler.services.changes), asked before this transaction; `note`:
    why it could not be asked, kept as the handled event's error; `reason`:
    what the provider answered then, which the head commit keeps for its
    plans to say (Commit.changes_note; files fetched for it clear that).

    A payload that cannot be understood fails the event at once; any other
    error propagates, so the caller can record it and the sweeper retry."""
    event = session.get(CiEvent, event_id, with_for_update=True)
    if event is None:
        log.warning("event %s does not exist", event_id)
        return None
    if event.status is not EventStatus.PENDING:
        return event.status
    if pulls.is_pull(event.provider, event.event):
        # Pulled in steps with no transaction around the provider's API
        # (workers.events): left pending for them.
        return event.status
    event.attempts += 1
    handler = HANDLERS.get((event.provider, event.event))
    if handler is None:
        event.status = EventStatus.IGNORED
    else:
        try:
            with session.begin_nested():
                handler(session, event, fetched)
        except MalformedPayload as error:
            event.status = EventStatus.FAILED
            event.error = f"malformed payload: {error.message}"
        else:
            event.status = EventStatus.HANDLED
            event.error = note[: retry.ERROR_TEXT_LIMIT] if note else None
            if reason is not None:
                _note_changes(
                    session, event, changes.unknown_note(event.provider, event.event, reason)
                )
            elif fetched is not None:
                _note_changes(session, event, None)
    event.handled_at = utcnow()
    return event.status


def _note_changes(session: Session, event: CiEvent, note: str | None) -> None:
    """Say on the event's head commit (what CI builds, and its plans are
    for) why its changed files may be incomplete; None: they are known."""
    head = HEADS.get((event.provider, event.event))
    sha = head(event.payload) if head is not None else None
    if sha is None or event.repository_id is None:
        return
    session.execute(
        update(Commit)
        .where(Commit.repository_id == event.repository_id, Commit.sha == sha)
        .values(changes_note=note)
    )


def record_event_error(
    session: Session,
    event_id: int,
    *,
    error: str,
    max_attempts: int,
    not_before: datetime | None = None,
) -> EventStatus | None:
    """Note why processing failed; give up once the attempts are spent.
    `not_before`: the sweeper leaves the event alone until then (a provider
    that said when its rate limit resets), so that the attempts are not
    spent while it would refuse anyway."""
    event = session.get(CiEvent, event_id, with_for_update=True)
    if event is None or event.status is not EventStatus.PENDING:
        return None if event is None else event.status
    if retry.count_failure(event, error=error, max_attempts=max_attempts):
        event.status = EventStatus.FAILED
        event.handled_at = utcnow()
    elif not_before is not None:
        # The sweeper takes what was last queued before its own message:
        # "queued" in the future, the event waits until then.
        event.queued_at = not_before
    return event.status


def claim_unhandled_events(
    session: Session, *, queued_before: datetime, max_attempts: int, limit: int = 500
) -> list[int]:
    """Pending events nobody took up in time, to queue again."""
    return retry.claim_stale(
        session, CiEvent, queued_before=queued_before, max_attempts=max_attempts, limit=limit
    )


def _github_head(payload: dict[str, Any]) -> str | None:
    after = payload.get("after")
    return after if isinstance(after, str) else None


def _generic_head(payload: dict[str, Any]) -> str | None:
    return generic.parse_commit(payload).sha


def _github_pull_head(payload: dict[str, Any]) -> str | None:
    return pull_requests.parse_github(payload).head_sha


def _gitlab_pull_head(payload: dict[str, Any]) -> str | None:
    return pull_requests.parse_gitlab(payload).head_sha


# The sha each kind of handled event leaves for CI to build next.
HEADS: dict[tuple[Provider, str], Callable[[dict[str, Any]], str | None]] = {
    (Provider.GITHUB, github.PUSH): _github_head,
    (Provider.GITLAB, gitlab.PUSH): gitlab.head_sha,
    (Provider.GITHUB, pull_requests.GITHUB_EVENT): _github_pull_head,
    (Provider.GITLAB, pull_requests.GITLAB_EVENT): _gitlab_pull_head,
    (Provider.GENERIC, generic.COMMIT): _generic_head,
}


def pushed_head(session: Session, event_id: int) -> int | None:
    """The commit a handled event left its branch at (what CI builds next):
    the head of a GitHub or GitLab push, the commit of a generic event."""
    event = session.get(CiEvent, event_id)
    if event is None or event.status is not EventStatus.HANDLED or event.repository_id is None:
        return None
    head = HEADS.get((event.provider, event.event))
    sha = head(event.payload) if head is not None else None
    if sha is None:
        return None
    return session.scalar(
        select(Commit.id).where(Commit.repository_id == event.repository_id, Commit.sha == sha)
    )
