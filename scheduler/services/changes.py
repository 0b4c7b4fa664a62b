"""Changed files asked of the provider's API, when the webhook does not
list them: a pull request's or merge request's files (its head against the
merge base), and a comparison for a push whose payload lists no files or
only some of its commits (GitLab lists at most 20, a forced GitHub push's
list is no diff from `before`).

As a pull (scheduler.services.pulls), in steps: `change_job` reads what to
ask in a short transaction, `fetch` asks the provider with nothing locked,
and the event's handler (scheduler.services.events) stores what came back
with the rest of the event. Without a token, or when the provider refuses
(401, 404, an answer that is no file list), the event is handled with what
its payload says (fail open): a plan is still scored, from fewer changed
files, and the event's `error` says why. When the provider fails in a way
worth another try (5xx, rate limit, timeout, after the HTTP client's own
retries), the event stays pending with the error and is asked about again
later (`next_try`: a doubling wait, bounded attempts); once they are spent it
is handled with its payload's files the same way, never lost."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from scheduler import limits
from scheduler.ingest import github, gitlab, pull_requests
from scheduler.ingest.errors import IngestError
from scheduler.models import ChangedFile, CiEvent, EventStatus, Plan, Provider, Repository
from scheduler.providers_api import github as github_api
from scheduler.providers_api import gitlab as gitlab_api
from scheduler.providers_api.changes import ComparedCommit, FileDiff
from scheduler.providers_api.http import HttpSettings, ProviderApiError
from scheduler.services import provider_access
from scheduler.services.sql import insert_rows_ignoring

log = logging.getLogger(__name__)

PULL_REQUEST_EVENTS = frozenset(
    {
        (Provider.GITHUB, pull_requests.GITHUB_EVENT),
        (Provider.GITLAB, pull_requests.GITLAB_EVENT),
    }
)
# A GitHub push webhook lists at most this many commits (the limit of 20
# that GitHub's documentation also names is that of timeline events, not of
# webhook deliveries): a push listing as many may have had more.
GITHUB_LISTED_COMMITS = limits.PUSH_COMMITS


class FetchFailed(Exception):
    """The provider did not say. `retryable`: a later attempt may (5xx, rate
    limit, timeout); `retry_after`: the seconds it asked to wait, if it did."""

    def __init__(
        self, message: str, *, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class ChangeJob:
    """What to ask the provider for one event."""

    event_id: int
    access: provider_access.ProviderAccess
    head: str
    number: int | None = None  # a pull request's number (GitLab: iid)
    base: str | None = None  # a comparison's base (the push's `before`)
    project_id: int | None = None  # GitLab's numeric project id, when the hook says it
    attempts: int = 0  # the event's attempts before this one


@dataclass(frozen=True)
class Fetched:
    """What the provider said: the head's files, and (a comparison) the
    commits from the base to the head."""

    files: tuple[FileDiff, ...]
    commits: tuple[ComparedCommit, ...] = ()


def is_pull_request(provider: Provider, event: str) -> bool:
    return (provider, event) in PULL_REQUEST_EVENTS


def parse_pull_request(provider: Provider, payload: Mapping[str, Any]) -> pull_requests.PullRequest:
    if provider is Provider.GITHUB:
        return pull_requests.parse_github(payload)
    return pull_requests.parse_gitlab(payload)


def wanted_pull_request(provider: Provider, payload: Mapping[str, Any]) -> bool:
    """Whether a pull request event brings a head commit to build."""
    if provider is Provider.GITHUB:
        return pull_requests.github_wanted(payload)
    return pull_requests.gitlab_wanted(payload)


def _has_files(commits: object) -> bool:
    return isinstance(commits, list) and any(
        isinstance(commit, Mapping)
        and any(commit.get(key) for key in ("added", "modified", "removed"))
        for commit in commits
    )


def push_range(provider: Provider, payload: Mapping[str, Any]) -> tuple[str, str] | None:
    """(before, after) of a branch push whose payload does not say all it
    changed, else None: GitHub, a forced push, one listing no commit or no
    file, or as many commits as a webhook lists (2,048); GitLab, one listing fewer commits than
    `total_commits_count`, no commit or no file. A new branch (`before` all
    zeros) has no base to compare with."""
    commits = payload.get("commits")
    listed = len(commits) if isinstance(commits, list) else 0
    before = payload.get("before")
    if provider is Provider.GITHUB:
        push = github.parse_push(payload)
        after = payload.get("after")
        if push.deleted or push.branch is None or is_null(before) or not isinstance(after, str):
            return None
        incomplete = (
            bool(payload.get("forced"))
            or listed == 0
            or listed >= GITHUB_LISTED_COMMITS
            or not _has_files(commits)
        )
    else:
        gitlab_push = gitlab.parse_push(payload)
        after = gitlab.head_sha(payload)
        if gitlab_push.deleted or gitlab_push.branch is None or is_null(before) or after is None:
            return None
        incomplete = (
            gitlab.total_commits(payload) > listed or listed == 0 or not _has_files(commits)
        )
    if not incomplete:
        return None
    assert isinstance(before, str)
    return before, after


def is_null(sha: object) -> bool:
    return github.is_null_sha(sha)


# The most of a provider's answer a commit's changes note quotes.
NOTE_REASON_CHARS = 500


def unknown_note(provider: Provider, event: str, reason: str) -> str:
    """What the plans of an event's head say when riskrank gave up asking the
    provider for the event's changed files and handled it with what its
    payload lists (fail open); `reason`: what the provider answered."""
    kept = (
        "scored with what the head's own pushes listed, if anything"
        if is_pull_request(provider, event)
        else "scored with the push's own list"
    )
    return f"changed files unknown ({reason[:NOTE_REASON_CHARS]}); {kept}"


def change_job(session: Session, event_id: int) -> ChangeJob | None:
    """The question the event asks of the provider's API, if any: a pending
    pull request event or incomplete push, of a repository with a token."""
    event = session.get(CiEvent, event_id)
    if event is None or event.status is not EventStatus.PENDING or event.repository_id is None:
        return None
    repository = session.get_one(Repository, event.repository_id)
    access = provider_access.access_of(repository)
    if access.token is None:
        return None
    try:
        if is_pull_request(event.provider, event.event):
            pull = parse_pull_request(event.provider, event.payload)
            return ChangeJob(
                event_id=event.id,
                access=access,
                head=pull.head_sha,
                number=pull.number,
                project_id=pull.project_id,
                attempts=event.attempts,
            )
        if (event.provider, event.event) in {
            (Provider.GITHUB, github.PUSH),
            (Provider.GITLAB, gitlab.PUSH),
        }:
            span = push_range(event.provider, event.payload)
            if span is None:
                return None
            project = event.payload.get("project_id")
            return ChangeJob(
                event_id=event.id,
                access=access,
                base=span[0],
                head=span[1],
                project_id=project
                if isinstance(project, int) and not isinstance(project, bool) and project > 0
                else None,
                attempts=event.attempts,
            )
    except IngestError:
        return None  # the handler fails the event with the reason
    return None


def fetch(job: ChangeJob, *, http: HttpSettings) -> Fetched:
    """Ask the provider (nothing locked); FetchFailed when it does not answer."""
    access = job.access
    assert access.token is not None
    try:
        if access.provider is Provider.GITHUB:
            with github_api.client(access.api_url, access.token, http) as api:
                if job.number is not None:
                    files = github_api.pull_request_files(api, access.full_name, job.number)
                    return Fetched(files=tuple(files))
                assert job.base is not None
                comparison = github_api.compare(api, access.full_name, job.base, job.head)
                return Fetched(files=comparison.files, commits=comparison.commits)
        project = gitlab_api.project_ref(job.project_id, access.full_name)
        with gitlab_api.client(access.api_url, access.token, http) as api:
            if job.number is not None:
                diffs = gitlab_api.merge_request_diffs(api, project, job.number)
                return Fetched(files=tuple(diffs))
            assert job.base is not None
            comparison = gitlab_api.compare(api, project, job.base, job.head)
            return Fetched(files=comparison.files, commits=comparison.commits)
    except ProviderApiError as error:
        raise FetchFailed(
            error.message, retryable=error.retryable, retry_after=error.retry_after
        ) from None


def next_try(
    failure: FetchFailed,
    *,
    attempts: int,
    max_attempts: int,
    first_wait: float,
    max_wait: float,
) -> float | None:
    """The seconds to wait before asking again, after `failure` of the
    attempt that followed `attempts` others; None when there is no other:
    the failure is not worth one (a refusal), or `max_attempts` are spent.
    The wait doubles from `first_wait` up to `max_wait`, and is never
    shorter than what the provider asked for."""
    if not failure.retryable or attempts + 1 >= max_attempts:
        return None
    wait = float(min(max_wait, first_wait * 2**attempts))
    if failure.retry_after is not None:
        wait = max(wait, failure.retry_after)
    return wait


def add_files(session: Session, commit_id: int, files: tuple[FileDiff, ...]) -> int:
    """Give a commit these changed files besides those it has; returns how
    many were new. A plan scored before them that CI has not followed yet
    (no policy applied) is marked stale: without its payload it is scored
    again when CI asks (scheduler.services.plans.lookup). One CI followed
    stays as it was served, for its evaluation."""
    if not files:
        return 0
    count = select(func.count()).select_from(ChangedFile).where(ChangedFile.commit_id == commit_id)
    before = session.scalar(count) or 0
    insert_rows_ignoring(
        session,
        ChangedFile,
        [
            {
                "commit_id": commit_id,
                "path": diff.path,
                "status": diff.status,
                "old_path": diff.old_path,
                "additions": diff.additions,
                "deletions": diff.deletions,
            }
            for diff in files
        ],
        conflict=["commit_id", "path"],
    )
    added = (session.scalar(count) or 0) - before
    if added:
        session.execute(
            update(Plan)
            .where(Plan.commit_id == commit_id, Plan.policy.is_(None))
            .values(payload=None)
        )
    return added
