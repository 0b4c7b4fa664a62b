"""Parsing real GitHub push payloads (../shared/samples/dev/github)."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scheduler.ingest import github
from scheduler.ingest.errors import MalformedPayload
from scheduler.models import FileStatus


def load(directory: Path, name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((directory / name).read_text())
    return document


def test_push_to_an_existing_branch(github_samples: Path) -> None:
    push = github.parse_push(load(github_samples, "push-normal-branch.json"))
    assert push.branch == "master"
    assert not push.deleted
    assert len(push.commits) == 1
    commit = push.commits[0]
    assert commit.sha == "fd489864e7642b48eaad6e3f155c10e46810ec72"
    assert commit.parent_sha == "737d38c599c1b2991664dfc6155d6bf516fcce36"
    assert commit.author_time == datetime(2018, 6, 29, 14, 4, 13, tzinfo=UTC)
    assert commit.message == "test a push event"
    assert {(f.path, f.status) for f in commit.files} == {
        (".razorops.yaml", FileStatus.ADDED),
        ("app/controllers/application_controller.rb", FileStatus.MODIFIED),
    }


def test_new_branch_has_no_known_parent(github_samples: Path) -> None:
    push = github.parse_push(load(github_samples, "push-branch-created.json"))
    assert [c.sha for c in push.commits] == ["6113728f27ae82c7b1a177c8d03f9e96e0adf246"]
    assert push.commits[0].parent_sha is None
    assert [(f.path, f.status) for f in push.commits[0].files] == [("README.md", FileStatus.ADDED)]


def test_forced_push_does_not_claim_before_as_parent(github_samples: Path) -> None:
    push = github.parse_push(load(github_samples, "push-forced.json"))
    assert push.branch == "EDM-1179"
    assert len(push.commits) == 1
    assert push.commits[0].parent_sha is None
    assert [f.path for f in push.commits[0].files] == ["internal/service/enrollmentrequest.go"]


def test_tag_deletion_brings_no_commit(github_samples: Path) -> None:
    push = github.parse_push(load(github_samples, "push-tag-deleted.json"))
    assert push.deleted
    assert push.is_tag
    assert push.commits == ()


def test_commits_chain_to_each_other_in_push_order() -> None:
    payload = {
        "ref": "refs/heads/main",
        "before": "b" * 40,
        "after": "d" * 40,
        "commits": [
            {"id": "c" * 40, "message": "one", "added": ["a.py"]},
            {"id": "d" * 40, "message": "two", "removed": ["a.py"], "modified": ["b.py"]},
        ],
        "head_commit": {"id": "d" * 40},
    }
    push = github.parse_push(payload)
    assert [(c.sha[0], c.parent_sha and c.parent_sha[0]) for c in push.commits] == [
        ("c", "b"),
        ("d", "c"),
    ]
    assert {f.path: f.status for f in push.commits[1].files} == {
        "a.py": FileStatus.REMOVED,
        "b.py": FileStatus.MODIFIED,
    }


def test_branch_created_at_an_existing_commit_keeps_its_head() -> None:
    payload = {
        "ref": "refs/heads/feature",
        "before": "0" * 40,
        "after": "e" * 40,
        "created": True,
        "commits": [],
        "head_commit": {"id": "e" * 40, "message": "m", "timestamp": "2024-01-02T03:04:05Z"},
    }
    push = github.parse_push(payload)
    assert [c.sha for c in push.commits] == ["e" * 40]
    assert push.commits[0].author_time == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_tag_push_brings_no_commit() -> None:
    payload = {
        "ref": "refs/tags/v1.0",
        "before": "0" * 40,
        "after": "e" * 40,
        "created": True,
        "commits": [],
        "head_commit": {"id": "e" * 40},
    }
    push = github.parse_push(payload)
    assert push.is_tag
    assert push.commits == ()


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"ref": "refs/heads/main", "after": "a" * 40, "commits": "nope"},
        {"ref": "refs/heads/main", "after": "a" * 40, "commits": [{"message": "no id"}]},
        {"ref": "refs/heads/main", "after": "a" * 40, "commits": [{"id": "a", "added": "x"}]},
    ],
)
def test_malformed_pushes_are_refused(payload: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        github.parse_push(payload)


@pytest.mark.parametrize(
    ("name", "full_name"),
    [
        ("push-normal-branch.json", "binkkatal/sample_app"),
        ("ping-repository-hook.json", "Octocoders/Hello-World"),
        ("pull_request-opened.json", "Codertocat/Hello-World"),
    ],
)
def test_repository_name_of_samples(github_samples: Path, name: str, full_name: str) -> None:
    assert github.repository_full_name(load(github_samples, name)) == full_name


def test_every_github_sample_names_its_repository(github_samples: Path) -> None:
    names = sorted(path.name for path in github_samples.glob("*.json"))
    assert len(names) == 11
    for name in names:
        assert "/" in github.repository_full_name(load(github_samples, name))


def test_workflow_run_sample_names_its_run_attempt_and_commit(github_samples: Path) -> None:
    payload = load(github_samples, "workflow_run-completed-success.json")
    assert github.is_completed_run(payload)
    run = github.parse_workflow_run(payload)
    assert run == github.WorkflowRun(
        id=289782451,
        attempt=1,
        head_sha="3484a3fb816e0859fd6e1cea078d76385ff50625",
        head_branch="master",
        conclusion="success",
    )
    assert run.run_key == "github-run-289782451-attempt-1"
    # A re-run is another build of the same commit.
    payload["workflow_run"]["run_attempt"] = 2
    assert github.parse_workflow_run(payload).run_key == "github-run-289782451-attempt-2"


@pytest.mark.parametrize(
    "change",
    [
        {"workflow_run": None},
        {"workflow_run": {"id": "1", "head_sha": "a" * 40}},
        {"workflow_run": {"id": 1, "head_sha": "0" * 40}},
        {"workflow_run": {"id": 1, "head_sha": "a" * 40, "run_attempt": 0}},
    ],
)
def test_malformed_workflow_runs_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        github.parse_workflow_run({"action": "completed", **change})


def test_only_completed_runs_are_pulled(github_samples: Path) -> None:
    payload = load(github_samples, "workflow_run-completed-success.json")
    for action in ("requested", "in_progress"):
        assert not github.is_completed_run({**payload, "action": action})
