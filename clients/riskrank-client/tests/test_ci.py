"""Where the repository, commit, branch and run key come from on each CI system."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from riskrank_client import ci

NO_GIT = Path("/nonexistent")


def no_git(_arguments: Sequence[str], _cwd: Path) -> str | None:
    return None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GITHUB_REPOSITORY": "octo-org/octo-repo"}, "octo-org/octo-repo"),
        ({"CI_PROJECT_PATH": "group/project"}, "group/project"),
        # A GitLab project in nested groups: OWNER is the groups.
        ({"CI_PROJECT_PATH": "group/sub/project"}, "group/sub/project"),
        ({"BITBUCKET_REPO_FULL_NAME": "team/repo"}, "team/repo"),
        ({"TRAVIS_REPO_SLUG": "owner/repo"}, "owner/repo"),
        ({"CIRCLE_PROJECT_USERNAME": "owner", "CIRCLE_PROJECT_REPONAME": "repo"}, "owner/repo"),
        ({"BUILDKITE_REPO": "git@github.com:acme/widgets.git"}, "acme/widgets"),
        ({"BUILDKITE_REPO": "https://github.com/acme/widgets.git"}, "acme/widgets"),
        ({"BUILDKITE_REPO": "ssh://git@gitlab.example.com:2222/acme/widgets"}, "acme/widgets"),
        ({"BUILDKITE_REPO": "https://gitlab.example.com/group/sub/widgets.git"}, None),
        ({"GIT_URL": "https://github.com/acme/widgets"}, "acme/widgets"),
        ({}, None),
    ],
)
def test_detect_repo(env: dict[str, str], expected: str | None) -> None:
    assert ci.detect_repo(env) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GITHUB_SHA": "a" * 40, "GIT_COMMIT": "b" * 40}, "a" * 40),
        ({"CI_COMMIT_SHA": "c" * 40}, "c" * 40),
        ({"BUILDKITE_COMMIT": "d" * 40}, "d" * 40),
        ({"CIRCLE_SHA1": "e" * 40}, "e" * 40),
        ({"TRAVIS_COMMIT": "f" * 40}, "f" * 40),
        ({"BITBUCKET_COMMIT": "1" * 40}, "1" * 40),
        ({"DRONE_COMMIT_SHA": "2" * 40}, "2" * 40),
        ({"GIT_COMMIT": " 3333333333333333333333333333333333333333\n"}, "3" * 40),
        ({"GITHUB_SHA": ""}, None),
    ],
)
def test_detect_commit_from_variables(env: dict[str, str], expected: str | None) -> None:
    assert ci.detect_commit(env, NO_GIT, git=no_git) == expected


def test_detect_commit_falls_back_to_git() -> None:
    asked: list[tuple[list[str], Path]] = []

    def git(arguments: Sequence[str], cwd: Path) -> str | None:
        asked.append((list(arguments), cwd))
        return "4" * 40

    assert ci.detect_commit({}, Path("/repo"), git=git) == "4" * 40
    assert asked == [(["rev-parse", "HEAD"], Path("/repo"))]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GITHUB_HEAD_REF": "feature/x", "GITHUB_REF_NAME": "12/merge"}, "feature/x"),
        ({"GITHUB_HEAD_REF": "", "GITHUB_REF_NAME": "main"}, "main"),
        ({"GITHUB_REF_NAME": "v1.0", "GITHUB_REF_TYPE": "tag"}, None),
        ({"CI_COMMIT_REF_NAME": "develop"}, "develop"),
        ({"CI_COMMIT_REF_NAME": "v2", "CI_COMMIT_TAG": "v2"}, None),
        (
            {"CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "topic", "CI_COMMIT_REF_NAME": "main"},
            "topic",
        ),
        ({"BUILDKITE_BRANCH": "main"}, "main"),
        ({"CIRCLE_BRANCH": "main"}, "main"),
        ({}, None),
    ],
)
def test_detect_branch(env: dict[str, str], expected: str | None) -> None:
    assert ci.detect_branch(env, NO_GIT, git=no_git) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GITHUB_RUN_ID": "123", "GITHUB_RUN_ATTEMPT": "1"}, "github-123-1"),
        ({"GITHUB_RUN_ID": "123"}, "github-123"),
        ({"CI_PIPELINE_ID": "456"}, "gitlab-456"),
        ({"BUILDKITE_BUILD_ID": "0190-abc"}, "buildkite-0190-abc"),
        ({"CIRCLE_WORKFLOW_ID": "wf-1"}, "circleci-wf-1"),
        ({"TRAVIS_BUILD_ID": "9"}, "travis-9"),
        ({"BUILD_TAG": "jenkins-job-12"}, "jenkins-jenkins-job-12"),
        ({}, None),
    ],
)
def test_detect_run_key(env: dict[str, str], expected: str | None) -> None:
    assert ci.detect_run_key(env) == expected


def test_git_missing_from_the_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert ci.run_git(["rev-parse", "HEAD"], tmp_path) is None


def test_a_hanging_git_is_given_up_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_git = tmp_path / "git"
    fake_git.write_text("#!/bin/sh\nexec sleep 30\n")
    fake_git.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(ci, "GIT_TIMEOUT_SECONDS", 0.3)
    started = time.monotonic()
    assert ci.run_git(["rev-parse", "HEAD"], tmp_path) is None
    assert time.monotonic() - started < 5


def test_git_outside_a_repository(tmp_path: Path) -> None:
    assert ci.run_git(["rev-parse", "HEAD"], tmp_path) is None


def test_credentials_in_the_url_are_not_shown() -> None:
    assert (
        ci.display_url("https://user:secret@riskrank.example.com/base")
        == "https://riskrank.example.com/base"
    )
    assert ci.display_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000"
