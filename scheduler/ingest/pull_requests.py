"""GitHub `pull_request` and GitLab Merge Request Hook payloads, normalised
(pure functions): the head commit CI builds, and what riskrank asks the
provider's API for its changed files.

https://docs.github.com/en/webhooks/webhook-events-and-payloads#pull_request
https://docs.gitlab.com/user/project/integrations/webhook_events/#merge-request-events"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scheduler import limits
from scheduler.ingest.errors import MalformedPayload
from scheduler.ingest.github import is_null_sha, parse_time

GITHUB_EVENT = "pull_request"
GITLAB_EVENT = "Merge Request Hook"
# The actions that bring a new head commit to build; the others (closed,
# labeled, edited, approved, ...) are acknowledged and dropped.
GITHUB_ACTIONS = frozenset({"opened", "synchronize", "reopened"})
GITLAB_ACTIONS = frozenset({"open", "reopen"})
# An `update` brings new commits only when it says the previous head (`oldrev`).
GITLAB_UPDATE = "update"


@dataclass(frozen=True)
class PullRequest:
    number: int  # GitHub's number, GitLab's iid
    head_sha: str
    head_branch: str | None
    base_branch: str | None
    base_sha: str | None  # GitHub: the base branch's head when the PR was last updated
    project_id: int | None = None  # GitLab: the target project, where the MR lives
    message: str | None = None
    author_name: str | None = None
    author_time: datetime | None = None


def _positive(value: object, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise MalformedPayload(f"{field} must be a positive integer")
    return limits.integer(value, field, minimum=1, maximum=limits.INT64_MAX)


def _sha(value: object, field: str) -> str:
    if not isinstance(value, str) or is_null_sha(value):
        raise MalformedPayload(f"{field} is required")
    return limits.text(value, field, max_chars=limits.SHA_CHARS)


def _branch(value: object, field: str) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return limits.text(value, field, max_chars=limits.NAME_CHARS)


def github_wanted(payload: Mapping[str, Any]) -> bool:
    return payload.get("action") in GITHUB_ACTIONS


def gitlab_wanted(payload: Mapping[str, Any]) -> bool:
    attributes = payload.get("object_attributes")
    if not isinstance(attributes, Mapping):
        return False
    action = attributes.get("action")
    if action in GITLAB_ACTIONS:
        return True
    return action == GITLAB_UPDATE and isinstance(attributes.get("oldrev"), str)


def parse_github(payload: Mapping[str, Any]) -> PullRequest:
    pull = payload.get("pull_request")
    if not isinstance(pull, Mapping):
        raise MalformedPayload("pull_request payload has no pull_request object")
    head = pull.get("head")
    base = pull.get("base")
    if not isinstance(head, Mapping) or not isinstance(base, Mapping):
        raise MalformedPayload("pull_request.head and pull_request.base are required")
    number = payload.get("number", pull.get("number"))
    return PullRequest(
        number=_positive(number, "number"),
        head_sha=_sha(head.get("sha"), "pull_request.head.sha"),
        head_branch=_branch(head.get("ref"), "pull_request.head.ref"),
        base_branch=_branch(base.get("ref"), "pull_request.base.ref"),
        base_sha=_sha(base.get("sha"), "pull_request.base.sha")
        if isinstance(base.get("sha"), str) and not is_null_sha(base.get("sha"))
        else None,
    )


def parse_gitlab(payload: Mapping[str, Any]) -> PullRequest:
    kind = payload.get("object_kind")
    if kind is not None and kind != "merge_request":
        raise MalformedPayload(
            f"a Merge Request Hook must have object_kind merge_request, not {kind!r}"
        )
    attributes = payload.get("object_attributes")
    if not isinstance(attributes, Mapping):
        raise MalformedPayload("Merge Request Hook payload has no object_attributes")
    last = attributes.get("last_commit")
    if not isinstance(last, Mapping):
        raise MalformedPayload("object_attributes.last_commit is required")
    author = last.get("author")
    author_name = author.get("name") if isinstance(author, Mapping) else None
    message = last.get("message")
    project_id = attributes.get("target_project_id")
    return PullRequest(
        number=_positive(attributes.get("iid"), "object_attributes.iid"),
        head_sha=_sha(last.get("id"), "object_attributes.last_commit.id"),
        head_branch=_branch(attributes.get("source_branch"), "object_attributes.source_branch"),
        base_branch=_branch(attributes.get("target_branch"), "object_attributes.target_branch"),
        base_sha=None,
        project_id=project_id
        if isinstance(project_id, int) and not isinstance(project_id, bool) and project_id > 0
        else None,
        message=limits.text(message, "object_attributes.last_commit.message")
        if isinstance(message, str)
        else None,
        author_name=_branch(author_name, "object_attributes.last_commit.author.name"),
        author_time=limits.time(
            parse_time(last.get("timestamp")), "object_attributes.last_commit.timestamp"
        ),
    )
