"""GitHub push and workflow_run payloads, normalised (pure functions).

https://docs.github.com/en/webhooks/webhook-events-and-payloads#push
https://docs.github.com/en/webhooks/webhook-events-and-payloads#workflow_run"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scheduler import limits
from scheduler.ingest.errors import MalformedPayload
from scheduler.models.enums import FileStatus

EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
SIGNATURE_HEADER = "X-Hub-Signature-256"

PUSH = "push"
PING = "ping"
WORKFLOW_RUN = "workflow_run"
# Events that are stored and processed; every other one is acknowledged and dropped.
HANDLED_EVENTS = frozenset({PUSH})
RECORDED_EVENTS = frozenset({PING})
# Stored and processed when the repository has a provider token (its
# results are pulled, scheduler.services.pulls) and the run is completed;
# else acknowledged and dropped like the others.
PULLED_EVENTS = frozenset({WORKFLOW_RUN})
COMPLETED = "completed"

ZERO_SHA = "0" * 40
BRANCH_PREFIX = "refs/heads/"
TAG_PREFIX = "refs/tags/"


@dataclass(frozen=True)
class FileChange:
    path: str
    status: FileStatus


@dataclass(frozen=True)
class PushedCommit:
    sha: str
    parent_sha: str | None
    author_name: str | None
    author_time: datetime | None
    message: str | None
    files: tuple[FileChange, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Push:
    ref: str
    branch: str | None  # None for tags
    deleted: bool
    commits: tuple[PushedCommit, ...]

    @property
    def is_tag(self) -> bool:
        return self.ref.startswith(TAG_PREFIX)


def repository_full_name(payload: Mapping[str, Any]) -> str:
    repository = payload.get("repository")
    name = repository.get("full_name") if isinstance(repository, Mapping) else None
    if not isinstance(name, str) or "/" not in name:
        raise MalformedPayload("payload has no repository.full_name")
    return name


# Shared with the GitLab parser, whose commits have the same shape.


def is_null_sha(sha: object) -> bool:
    """All zeros (or missing): no commit, as a deleted or new ref's side."""
    return not isinstance(sha, str) or not sha.strip("0")


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time with its zone, else None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def commit_files(commit: Mapping[str, Any], where: str = "commit") -> tuple[FileChange, ...]:
    """A listed commit's added, modified and removed paths."""
    changes: dict[str, FileChange] = {}
    for key, status in (
        ("added", FileStatus.ADDED),
        ("modified", FileStatus.MODIFIED),
        ("removed", FileStatus.REMOVED),
    ):
        paths = commit.get(key) or []
        if not isinstance(paths, list):
            raise MalformedPayload(f"{where}.{key} must be a list of paths")
        limits.count(paths, f"{where}.{key}", limits.COMMIT_FILES)
        for number, path in enumerate(paths):
            if isinstance(path, str) and path:
                limits.text(path, f"{where}.{key}[{number}]", max_bytes=limits.PATH_BYTES)
                changes[path] = FileChange(path, status)
    return tuple(changes.values())


def pushed_commit(raw: object, parent_sha: str | None, where: str = "commit") -> PushedCommit:
    """A listed commit (id, author, timestamp, message, files); Unstorable
    (422, naming `where`) for what the database cannot hold."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str) or not raw["id"]:
        raise MalformedPayload(f"{where}: every commit must be an object with a string id")
    author = raw.get("author")
    author_name = author.get("name") if isinstance(author, Mapping) else None
    message = raw.get("message")
    return PushedCommit(
        sha=limits.text(raw["id"], f"{where}.id", max_chars=limits.SHA_CHARS),
        parent_sha=parent_sha,
        author_name=limits.text(author_name, f"{where}.author.name", max_chars=limits.NAME_CHARS)
        if isinstance(author_name, str)
        else None,
        author_time=limits.time(parse_time(raw.get("timestamp")), f"{where}.timestamp"),
        message=limits.text(message, f"{where}.message") if isinstance(message, str) else None,
        files=commit_files(raw, where),
    )


def branch_of(ref: str) -> str | None:
    """The branch a ref names (None for a tag), if a branch column holds it."""
    if not ref.startswith(BRANCH_PREFIX):
        return None
    return limits.text(ref.removeprefix(BRANCH_PREFIX), "ref", max_chars=limits.NAME_CHARS)


def parent_of(before: object) -> str:
    return limits.text(str(before), "before", max_chars=limits.SHA_CHARS)


def parse_push(payload: Mapping[str, Any]) -> Push:
    """The commits a push brought, each with its first parent and its files.

    Parents come from the order GitHub lists commits in (oldest first): the
    first commit's parent is `before`, unless the branch is new or the push was
    forced (then `before` is not an ancestor and the parent is unknown)."""
    ref = payload.get("ref")
    if not isinstance(ref, str):
        raise MalformedPayload("push payload has no ref")
    deleted = bool(payload.get("deleted")) or is_null_sha(payload.get("after"))
    branch = branch_of(ref)
    raw_commits = payload.get("commits") or []
    if not isinstance(raw_commits, list):
        raise MalformedPayload("push commits must be a list")
    limits.count(raw_commits, "commits", limits.PUSH_COMMITS)
    if deleted or branch is None:
        # Deleting a ref brings no commit; a tag names a commit riskrank
        # already has from its branch (or will get when the branch is pushed).
        return Push(ref=ref, branch=branch, deleted=deleted, commits=())

    before = payload.get("before")
    parent: str | None = None
    if not payload.get("created") and not payload.get("forced") and not is_null_sha(before):
        parent = parent_of(before)
    commits: list[PushedCommit] = []
    for number, raw in enumerate(raw_commits):
        commit = pushed_commit(raw, parent, f"commits[{number}]")
        commits.append(commit)
        parent = commit.sha

    # A branch created at an existing commit lists no commits: the head is
    # still the commit CI will build on that branch.
    head = payload.get("head_commit")
    # (An id that is not a string is no listed commit's: pushed_commit
    # refuses it, where a set lookup would raise TypeError on a list.)
    if isinstance(head, Mapping) and not any(head.get("id") == c.sha for c in commits):
        commits.append(pushed_commit(head, None, "head_commit"))
    return Push(ref=ref, branch=branch, deleted=False, commits=tuple(commits))


@dataclass(frozen=True)
class WorkflowRun:
    id: int
    attempt: int
    head_sha: str
    head_branch: str | None
    conclusion: str | None

    @property
    def run_key(self) -> str:
        """The build a run attempt's reports share: a re-run (the next
        attempt) is another build of the commit, so a test that failed in
        one and passed in the other is seen as flaky."""
        return f"github-run-{self.id}-attempt-{self.attempt}"


def is_completed_run(payload: Mapping[str, Any]) -> bool:
    run = payload.get("workflow_run")
    return payload.get("action") == COMPLETED and isinstance(run, Mapping)


def parse_workflow_run(payload: Mapping[str, Any]) -> WorkflowRun:
    """The run a workflow_run delivery is about: its id, attempt and commit."""
    run = payload.get("workflow_run")
    if not isinstance(run, Mapping):
        raise MalformedPayload("workflow_run payload has no workflow_run object")
    run_id = run.get("id")
    if not isinstance(run_id, int) or isinstance(run_id, bool) or run_id <= 0:
        raise MalformedPayload("workflow_run.id must be a positive integer")
    attempt = run.get("run_attempt", 1)
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt <= 0:
        raise MalformedPayload("workflow_run.run_attempt must be a positive integer")
    sha = run.get("head_sha")
    if not isinstance(sha, str) or is_null_sha(sha):
        raise MalformedPayload("workflow_run.head_sha is required")
    branch = run.get("head_branch")
    conclusion = run.get("conclusion")
    return WorkflowRun(
        id=limits.integer(run_id, "workflow_run.id", minimum=1, maximum=limits.INT64_MAX),
        attempt=limits.integer(attempt, "workflow_run.run_attempt", minimum=1, maximum=1_000_000),
        head_sha=limits.text(sha, "workflow_run.head_sha", max_chars=limits.SHA_CHARS),
        head_branch=limits.text(branch, "workflow_run.head_branch", max_chars=limits.NAME_CHARS)
        if isinstance(branch, str) and branch
        else None,
        conclusion=conclusion if isinstance(conclusion, str) else None,
    )
