"""GitLab webhook deliveries, normalised (pure functions).

https://docs.gitlab.com/user/project/integrations/webhook_events/

A GitLab push lists its commits in the shape GitHub does (id, message,
timestamp, author, added/modified/removed), so it is read into the same
`github.Push` and stored by the same code."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET  # writes XML only: reports are parsed by defusedxml
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scheduler import limits
from scheduler.ingest.errors import MalformedPayload
from scheduler.ingest.github import (
    Push,
    PushedCommit,
    branch_of,
    is_null_sha,
    parent_of,
    pushed_commit,
)

EVENT_HEADER = "X-Gitlab-Event"
TOKEN_HEADER = "X-Gitlab-Token"  # noqa: S105 (a header name, not a secret)
# Signed webhooks (a signing token set on the webhook): the Standard
# Webhooks headers, beside or instead of X-Gitlab-Token.
SIGNATURE_HEADER = "webhook-signature"
WEBHOOK_ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
# Stable across GitLab's retries of one delivery (GitLab 17.4+).
IDEMPOTENCY_HEADER = "Idempotency-Key"
# One per event (GitLab 14.8+): a retry of the same event carries it again.
EVENT_UUID_HEADER = "X-Gitlab-Event-UUID"

PUSH = "Push Hook"
TAG_PUSH = "Tag Push Hook"
# Stored and processed.
HANDLED_EVENTS = frozenset({PUSH})
# Stored for the record, nothing to process: GitHub sends a tag push as a
# `push`, which riskrank stores; GitLab's own hook for it is kept the same way.
RECORDED_EVENTS = frozenset({TAG_PUSH})
PIPELINE = "Pipeline Hook"
# Stored and processed when the project has a provider token (its results
# are pulled, scheduler.services.pulls) and the pipeline has finished;
# else acknowledged and dropped like the others.
PULLED_EVENTS = frozenset({PIPELINE})
# A pipeline in one of these is done: its test report will not change
# (GitLab sends a hook at every status: pending, running, success, ...).
FINISHED_STATUSES = frozenset({"success", "failed", "canceled"})
# Merge Request Hooks that bring a new head are stored and processed
# (scheduler.ingest.pull_requests). Every other event (Job Hook, Note Hook, System Hook,
# ...) is acknowledged and dropped, as GitHub's pull_request is: nothing
# reads them yet, and Job Hooks come several times per job.

# GitLab puts at most this many commits, the newest ones, in a push payload
# (`total_commits_count` says how many the push had).
MAX_LISTED_COMMITS = 20


def delivery_id(*, idempotency_key: str | None, event_uuid: str | None, body: bytes) -> str:
    """The id a redelivery of this delivery carries again."""
    for header, value in ((IDEMPOTENCY_HEADER, idempotency_key), (EVENT_UUID_HEADER, event_uuid)):
        if value and value.strip():
            return limits.text(value.strip(), header, max_chars=limits.NAME_CHARS)
    # GitLab before 14.8 sends neither header. The body is then the only
    # thing a redelivery repeats; two different pushes never have the same
    # body (it names `before` and `after`), so its hash tells them apart.
    return "sha256:" + hashlib.sha256(body).hexdigest()


def project_path(payload: Mapping[str, Any]) -> str | None:
    """`project.path_with_namespace` (`group/sub/project`), or None when the
    payload does not name it (older GitLab's Job Hooks give only `project_id`
    and a display name)."""
    project = payload.get("project")
    path = project.get("path_with_namespace") if isinstance(project, Mapping) else None
    if not isinstance(path, str) or "/" not in path.strip("/"):
        return None
    return path.strip("/")


def default_branch(payload: Mapping[str, Any]) -> str | None:
    project = payload.get("project")
    branch = project.get("default_branch") if isinstance(project, Mapping) else None
    return branch if isinstance(branch, str) and branch else None


def head_sha(payload: Mapping[str, Any]) -> str | None:
    """The commit the pushed branch now points at: `checkout_sha`, else
    `after`; None when the branch was deleted."""
    for key in ("checkout_sha", "after"):
        sha = payload.get(key)
        if isinstance(sha, str) and not is_null_sha(sha):
            return limits.text(sha, key, max_chars=limits.SHA_CHARS)
    return None


def total_commits(payload: Mapping[str, Any]) -> int:
    """How many commits the push had (more than it lists past 20)."""
    listed = payload.get("commits")
    count = payload.get("total_commits_count")
    if isinstance(count, int) and not isinstance(count, bool):
        return count
    return len(listed) if isinstance(listed, list) else 0


def parse_push(payload: Mapping[str, Any]) -> Push:
    """The commits a Push Hook lists, each with its first parent and its files.

    GitLab lists the newest commits (at most 20) oldest first, so parents are
    read as for GitHub: each commit's parent is the one listed before it, and
    the first one's is `before` unless the branch is new (`before` all zeros)
    or the list was cut (its first commit then follows unlisted ones). GitLab
    does not say whether a push was forced; a forced push's first commit is
    given `before` as its parent, which it is not."""
    kind = payload.get("object_kind")
    if kind is not None and kind != "push":
        raise MalformedPayload(f"a Push Hook must have object_kind push, not {kind!r}")
    ref = payload.get("ref")
    if not isinstance(ref, str):
        raise MalformedPayload("push payload has no ref")
    raw_commits = payload.get("commits") or []
    if not isinstance(raw_commits, list):
        raise MalformedPayload("push commits must be a list")
    limits.count(raw_commits, "commits", limits.PUSH_COMMITS)
    head = head_sha(payload)
    branch = branch_of(ref)
    if head is None or branch is None:
        # A deleted branch brings no commit; tags come as Tag Push Hooks.
        return Push(ref=ref, branch=branch, deleted=head is None, commits=())

    before = payload.get("before")
    truncated = total_commits(payload) > len(raw_commits)
    parent = None if truncated or is_null_sha(before) else parent_of(before)
    commits: list[PushedCommit] = []
    for number, raw in enumerate(raw_commits):
        commit = pushed_commit(raw, parent, f"commits[{number}]")
        commits.append(commit)
        parent = commit.sha

    # A branch created at a commit another branch has lists no commit: the
    # head is still what CI builds on it.
    if head not in {commit.sha for commit in commits}:
        commits.append(
            PushedCommit(
                sha=head, parent_sha=None, author_name=None, author_time=None, message=None
            )
        )
    return Push(ref=ref, branch=branch, deleted=False, commits=tuple(commits))


@dataclass(frozen=True)
class Pipeline:
    id: int
    project_id: int | None
    sha: str
    ref: str | None
    status: str
    finished_at: str | None

    @property
    def run_key(self) -> str:
        return f"gitlab-pipeline-{self.id}"


def is_finished_pipeline(payload: Mapping[str, Any]) -> bool:
    attributes = payload.get("object_attributes")
    return isinstance(attributes, Mapping) and attributes.get("status") in FINISHED_STATUSES


def parse_pipeline(payload: Mapping[str, Any]) -> Pipeline:
    """The pipeline a Pipeline Hook is about: its id, commit and status."""
    attributes = payload.get("object_attributes")
    if not isinstance(attributes, Mapping):
        raise MalformedPayload("Pipeline Hook payload has no object_attributes")
    pipeline_id = attributes.get("id")
    if not isinstance(pipeline_id, int) or isinstance(pipeline_id, bool) or pipeline_id <= 0:
        raise MalformedPayload("object_attributes.id must be a positive integer")
    sha = attributes.get("sha")
    if not isinstance(sha, str) or is_null_sha(sha):
        raise MalformedPayload("object_attributes.sha is required")
    project = payload.get("project")
    project_id = project.get("id") if isinstance(project, Mapping) else None
    ref = attributes.get("ref")
    finished = attributes.get("finished_at")
    return Pipeline(
        id=limits.integer(pipeline_id, "object_attributes.id", maximum=limits.INT64_MAX),
        project_id=project_id
        if isinstance(project_id, int) and not isinstance(project_id, bool) and project_id > 0
        else None,
        sha=limits.text(sha, "object_attributes.sha", max_chars=limits.SHA_CHARS),
        ref=limits.text(ref, "object_attributes.ref", max_chars=limits.NAME_CHARS)
        if isinstance(ref, str) and ref and not attributes.get("tag")
        else None,
        status=str(attributes.get("status")),
        finished_at=finished if isinstance(finished, str) else None,
    )


# A test case's status in GitLab's test report, and the JUnit element
# that says it (none: passed).
_JUNIT_STATUS = {"failed": "failure", "error": "error", "skipped": "skipped"}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def junit_of_test_report(report: Mapping[str, Any]) -> bytes:
    """A pipeline's test report (GET /projects/:id/pipelines/:id/test_report)
    written back as the JUnit XML it was read from: its test cases then get
    the ids an uploaded JUnit report gives them (one test identity), and
    the report is ingested as an uploaded one is."""
    root = ET.Element("testsuites")
    suites = report.get("test_suites")
    for suite in suites if isinstance(suites, list) else []:
        if not isinstance(suite, Mapping):
            continue
        element = ET.SubElement(root, "testsuite", name=_text(suite.get("name")) or "")
        cases = suite.get("test_cases")
        for case in cases if isinstance(cases, list) else []:
            if not isinstance(case, Mapping) or not _text(case.get("name")):
                continue
            attributes = {"name": str(case["name"])}
            for key in ("classname", "file"):
                if _text(case.get(key)):
                    attributes[key] = str(case[key])
            seconds = case.get("execution_time")
            if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0:
                attributes["time"] = repr(float(seconds))
            testcase = ET.SubElement(element, "testcase", attributes)
            outcome = _JUNIT_STATUS.get(str(case.get("status")))
            if outcome is not None:
                child = ET.SubElement(testcase, outcome)
                message = _text(case.get("stack_trace")) or _text(case.get("system_output"))
                if message is not None and outcome != "skipped":
                    child.text = message
    written: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return written
