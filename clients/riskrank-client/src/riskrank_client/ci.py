"""What the CI system (or git) says about the build: the repository, the
commit, the branch and the build's key. One detection for every riskrank
client (this package's commands and the pytest plugin).

Everything here reads an explicit `env` mapping so it can be tested without
touching the process environment."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

GIT_TIMEOUT_SECONDS = 5.0

# OWNER/NAME, where OWNER may be nested groups (GitLab: group/sub/name).
OWNER_NAME = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")
# A clone URL's path counts only with exactly two parts (a longer one may
# start with a server's own prefix, e.g. Bitbucket Server's /scm/).
_TWO_PARTS = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
# What riskrank takes as a commit: a full SHA-1 or SHA-256 id.
FULL_COMMIT = re.compile(r"[0-9a-fA-F]{40}(?:[0-9a-fA-F]{24})?")

# Each CI system's variable for the commit under test, in the order tried.
COMMIT_VARIABLES = (
    "GITHUB_SHA",  # GitHub Actions
    "CI_COMMIT_SHA",  # GitLab CI, Woodpecker
    "BUILDKITE_COMMIT",
    "CIRCLE_SHA1",
    "TRAVIS_COMMIT",
    "BITBUCKET_COMMIT",
    "DRONE_COMMIT_SHA",
    "BUILD_SOURCEVERSION",  # Azure Pipelines
    "SEMAPHORE_GIT_SHA",
    "APPVEYOR_REPO_COMMIT",
    "CODEBUILD_RESOLVED_SOURCE_VERSION",  # AWS CodeBuild
    "HEROKU_TEST_RUN_COMMIT_VERSION",
    "GIT_COMMIT",  # Jenkins git plugin: last, it is also a common local name
)

# A pull request's own branch comes before the ref the build ran on (which is
# a synthetic merge ref for pull requests on GitHub).
BRANCH_VARIABLES = (
    "GITHUB_HEAD_REF",
    "GITHUB_REF_NAME",
    "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",  # GitLab merge request pipelines
    "CI_COMMIT_REF_NAME",  # GitLab, Woodpecker
    "BUILDKITE_BRANCH",
    "CIRCLE_BRANCH",
    "TRAVIS_PULL_REQUEST_BRANCH",
    "TRAVIS_BRANCH",
    "BITBUCKET_BRANCH",
    "DRONE_SOURCE_BRANCH",
    "DRONE_BRANCH",
    "SEMAPHORE_GIT_PR_BRANCH",
    "SEMAPHORE_GIT_BRANCH",
    "APPVEYOR_PULL_REQUEST_HEAD_REPO_BRANCH",
    "APPVEYOR_REPO_BRANCH",
    "BRANCH_NAME",  # Jenkins multibranch pipelines
    "GIT_BRANCH",  # Jenkins git plugin
)

# Variables that hold OWNER/NAME as they are.
REPO_VARIABLES = (
    "GITHUB_REPOSITORY",
    "CI_PROJECT_PATH",  # GitLab: group/name, or nested groups, group/sub/name
    "BITBUCKET_REPO_FULL_NAME",
    "DRONE_REPO",
    "TRAVIS_REPO_SLUG",
    "SEMAPHORE_GIT_REPO_SLUG",
    "APPVEYOR_REPO_NAME",
)
# Variables that hold a clone URL whose path may end in OWNER/NAME(.git).
REPO_URL_VARIABLES = (
    "BUILDKITE_REPO",
    "CIRCLE_REPOSITORY_URL",
    "BUILD_REPOSITORY_URI",  # Azure Pipelines
    "GIT_URL",  # Jenkins git plugin
)

# Jobs of one build (shards, matrix entries) share these; a rerun of the build
# gets a new key where the CI system tells attempts apart.
RUN_KEY_SOURCES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("github", ("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT")),
    ("gitlab", ("CI_PIPELINE_ID",)),
    ("buildkite", ("BUILDKITE_BUILD_ID",)),
    ("circleci", ("CIRCLE_WORKFLOW_ID",)),
    ("travis", ("TRAVIS_BUILD_ID",)),
    ("bitbucket", ("BITBUCKET_PIPELINE_UUID",)),
    ("drone", ("DRONE_BUILD_NUMBER",)),
    ("azure", ("BUILD_BUILDID", "SYSTEM_JOBATTEMPT")),
    ("semaphore", ("SEMAPHORE_WORKFLOW_ID",)),
    ("appveyor", ("APPVEYOR_BUILD_ID",)),
    ("jenkins", ("BUILD_TAG",)),
)

# Every CI variable read here, for tests that need a clean environment.
CI_VARIABLES = (
    *COMMIT_VARIABLES,
    *BRANCH_VARIABLES,
    *REPO_VARIABLES,
    *REPO_URL_VARIABLES,
    "CIRCLE_PROJECT_USERNAME",
    "CIRCLE_PROJECT_REPONAME",
    "GITHUB_REF_TYPE",
    "CI_COMMIT_TAG",
    *(name for _, names in RUN_KEY_SOURCES for name in names),
)

GitRunner = Callable[[Sequence[str], Path], str | None]


def clean(value: object) -> str | None:
    """The value trimmed, or None when there is nothing in it."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def first(env: Mapping[str, str], names: Sequence[str]) -> str | None:
    for name in names:
        value = clean(env.get(name))
        if value is not None:
            return value
    return None


def display_url(url: str) -> str:
    """The URL without any credentials in it, for messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def git_output(arguments: Sequence[str], cwd: Path) -> str | None:
    """git's whole output, or None when git is missing, slow or unhappy."""
    try:
        completed = subprocess.run(  # noqa: S603  (fixed argv, no shell)
            ["git", *arguments],  # noqa: S607  (git from PATH, like a user runs it)
            cwd=cwd,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="surrogateescape",
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if completed.returncode != 0:
        return None
    return completed.stdout


def run_git(arguments: Sequence[str], cwd: Path) -> str | None:
    """git's one-line answer, or None when git is missing, slow or unhappy."""
    return clean(git_output(arguments, cwd))


def repo_from_url(url: str) -> str | None:
    """OWNER/NAME from a clone URL (https, ssh or scp-like), if its path has
    exactly two parts."""
    text = url.strip()
    if "://" in text:
        path = urlsplit(text).path
    elif ":" in text:  # scp-like: git@github.com:owner/name.git
        path = text.split(":", 1)[1]
    else:
        path = text
    path = path.strip("/")
    path = path.removesuffix(".git")
    return path if _TWO_PARTS.match(path) else None


def detect_repo(env: Mapping[str, str]) -> str | None:
    for name in REPO_VARIABLES:
        value = clean(env.get(name))
        if value is not None and OWNER_NAME.match(value):
            return value
    owner = clean(env.get("CIRCLE_PROJECT_USERNAME"))
    repo = clean(env.get("CIRCLE_PROJECT_REPONAME"))
    if owner and repo and OWNER_NAME.match(f"{owner}/{repo}"):
        return f"{owner}/{repo}"
    for name in REPO_URL_VARIABLES:
        value = clean(env.get(name))
        if value is not None:
            found = repo_from_url(value)
            if found is not None:
                return found
    return None


def detect_commit(
    env: Mapping[str, str], rootdir: Path, *, git: GitRunner | None = None
) -> str | None:
    return first(env, COMMIT_VARIABLES) or (git or run_git)(["rev-parse", "HEAD"], rootdir)


def detect_branch(
    env: Mapping[str, str], rootdir: Path, *, git: GitRunner | None = None
) -> str | None:
    if clean(env.get("GITHUB_REF_TYPE")) == "tag" or clean(env.get("CI_COMMIT_TAG")):
        # A tag build: its ref name is the tag's, and no branch is under test.
        return None
    branch = first(env, BRANCH_VARIABLES)
    if branch is not None:
        return branch
    # Quiet and failing on a detached HEAD, which has no branch to report.
    return (git or run_git)(["symbolic-ref", "--quiet", "--short", "HEAD"], rootdir)


def detect_run_key(env: Mapping[str, str]) -> str | None:
    for system, names in RUN_KEY_SOURCES:
        found = clean(env.get(names[0]))
        if found is None:
            continue
        rest = [value for value in (clean(env.get(name)) for name in names[1:]) if value]
        return "-".join([system, found, *rest])
    return None


def resolve_commit(revision: str, cwd: Path, *, git: GitRunner | None = None) -> str | None:
    """The full commit id riskrank takes for `revision`: a full id as is
    (lower-cased); anything else (HEAD, a branch, a short id) as git in `cwd`
    names it; None when git cannot."""
    text = revision.strip()
    if FULL_COMMIT.fullmatch(text):
        return text.lower()
    if not text or text.startswith("-"):
        return None  # never an option to git
    found = (git or run_git)(["rev-parse", "--verify", "--quiet", f"{text}^{{commit}}"], cwd)
    if found is None or not FULL_COMMIT.fullmatch(found):
        return None
    return found.lower()


def unresolved_commit(revision: str) -> str:
    """Why `revision` was not taken as a commit, for one line of output."""
    return f"{revision!r} is not a commit id (40 or 64 hex digits) nor a revision git knows here"
