"""Where the plugin's settings come from: command-line options, then RISKRANK_*
variables, then what the CI system (or git) says about the build.

Everything here reads an explicit `env` mapping so it can be tested without
touching the process environment."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

DEFAULT_TIMEOUT_SECONDS = 10.0
GIT_TIMEOUT_SECONDS = 5.0

# OWNER/NAME, where OWNER may be nested groups (GitLab: group/sub/name).
_OWNER_NAME = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")
# A clone URL's path counts only with exactly two parts (a longer one may
# start with a server's own prefix, e.g. Bitbucket Server's /scm/).
_TWO_PARTS = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")

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

# Every variable the plugin reads, for tests that need a clean environment.
ENVIRONMENT_VARIABLES = (
    "RISKRANK_URL",
    "RISKRANK_TOKEN",
    "RISKRANK_REPO",
    "RISKRANK_COMMIT",
    "RISKRANK_BRANCH",
    "RISKRANK_RUN_KEY",
    "RISKRANK_TIMEOUT",
    "RISKRANK_MODE",
    "RISKRANK_BUDGET",
    "RISKRANK_SHARD",
    "RISKRANK_BY",
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

# The plan API's modes (see the riskrank README): `order` keeps every test,
# the others trim to a budget.
MODES = ("order", "time", "fraction", "confidence")
BY = ("tests", "duration")
_SHARD = re.compile(r"^(\d+)/(\d+)$")


@dataclass(frozen=True)
class PlanRequest:
    """What to ask riskrank's plan API for; `problems` lists malformed
    options (with any, no plan is asked for and every test runs)."""

    mode: str
    budget: float | None = None
    by: str | None = None
    shard: str | None = None
    problems: tuple[str, ...] = field(default=())

    def to_json(self, *, branch: str | None, tests: Sequence[str] | None) -> dict[str, object]:
        """The request's body; without `tests`, the plan covers every test
        riskrank knows of the repository (what an xdist controller asks for:
        it collects nothing itself)."""
        body: dict[str, object] = {"mode": self.mode}
        for key, value in (
            ("budget", self.budget),
            ("by", self.by),
            ("shard", self.shard),
            ("branch", branch),
        ):
            if value is not None:
                body[key] = value
        if tests is not None:
            body["tests"] = list(tests)
        return body


@dataclass(frozen=True)
class Settings:
    """What the plugin needs for one session. `problems` lists what is
    missing or malformed; with any, nothing is sent."""

    url: str
    token: str | None
    owner: str | None
    name: str | None
    commit: str | None
    branch: str | None
    run_key: str | None
    timeout: float
    problems: tuple[str, ...] = field(default=())
    # None: no mode was asked for, the plugin only uploads.
    plan: PlanRequest | None = None

    @property
    def repository(self) -> str | None:
        if self.owner is None or self.name is None:
            return None
        return f"{self.owner}/{self.name}"

    @property
    def display_url(self) -> str:
        """The URL without any credentials in it, for messages."""
        return display_url(self.url)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("riskrank", "riskrank: upload test outcomes to a riskrank server")
    group.addoption(
        "--riskrank-url",
        metavar="URL",
        help="riskrank server, e.g. https://riskrank.example.com [RISKRANK_URL]. "
        "Without it the plugin does nothing.",
    )
    group.addoption(
        "--riskrank-token",
        metavar="TOKEN",
        help="API token with the results:write scope [RISKRANK_TOKEN]; "
        "prefer the variable, options show up in process lists.",
    )
    group.addoption(
        "--riskrank-repo",
        metavar="OWNER/NAME",
        help="Repository as registered in riskrank [RISKRANK_REPO]; "
        "default: from the CI system (GITHUB_REPOSITORY, CI_PROJECT_PATH, ...).",
    )
    group.addoption(
        "--riskrank-commit",
        metavar="SHA",
        help="Commit under test [RISKRANK_COMMIT]; default: from the CI system, "
        "else `git rev-parse HEAD` in the rootdir.",
    )
    group.addoption(
        "--riskrank-branch",
        metavar="BRANCH",
        help="Branch under test [RISKRANK_BRANCH]; default: from the CI system, else git.",
    )
    group.addoption(
        "--riskrank-run-key",
        metavar="KEY",
        help="Key shared by the jobs (shards, matrix entries) of one CI build "
        "[RISKRANK_RUN_KEY]; default: from the CI system's build id.",
    )
    group.addoption(
        "--riskrank-timeout",
        metavar="SECONDS",
        type=float,
        help=f"Longest time spent on each call to riskrank (the plan, the upload) "
        f"[RISKRANK_TIMEOUT] (default {DEFAULT_TIMEOUT_SECONDS:g}).",
    )
    group.addoption(
        "--riskrank-mode",
        metavar="MODE",
        help="Follow riskrank's plan: run the riskiest tests first and, but for "
        "`order`, only those within the budget [RISKRANK_MODE]: "
        "order | time | fraction | confidence. Without it the plugin only uploads.",
    )
    group.addoption(
        "--riskrank-budget",
        metavar="BUDGET",
        help="The plan's budget [RISKRANK_BUDGET]: seconds for `time`, a share 0..1 "
        "of the tests for `fraction`, of the expected failures for `confidence`.",
    )
    group.addoption(
        "--riskrank-by",
        metavar="tests|duration",
        help="What the budget counts, and so the order: tests (default; riskiest "
        "first) or duration (riskiest per second; `fraction` of the expected "
        "duration) [RISKRANK_BY].",
    )
    group.addoption(
        "--riskrank-shard",
        metavar="I/N",
        help="Run shard I of N of the plan's selection, balanced by expected "
        "duration [RISKRANK_SHARD].",
    )


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _first(env: Mapping[str, str], names: Sequence[str]) -> str | None:
    for name in names:
        value = _clean(env.get(name))
        if value is not None:
            return value
    return None


def display_url(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def run_git(arguments: Sequence[str], cwd: Path) -> str | None:
    """git's one-line answer, or None when git is missing, slow or unhappy."""
    try:
        completed = subprocess.run(  # noqa: S603  (fixed argv, no shell)
            ["git", *arguments],  # noqa: S607  (git from PATH, like a user runs it)
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if completed.returncode != 0:
        return None
    return _clean(completed.stdout)


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
        value = _clean(env.get(name))
        if value is not None and _OWNER_NAME.match(value):
            return value
    owner = _clean(env.get("CIRCLE_PROJECT_USERNAME"))
    repo = _clean(env.get("CIRCLE_PROJECT_REPONAME"))
    if owner and repo and _OWNER_NAME.match(f"{owner}/{repo}"):
        return f"{owner}/{repo}"
    for name in REPO_URL_VARIABLES:
        value = _clean(env.get(name))
        if value is not None:
            found = repo_from_url(value)
            if found is not None:
                return found
    return None


def detect_commit(
    env: Mapping[str, str], rootdir: Path, *, git: GitRunner | None = None
) -> str | None:
    return _first(env, COMMIT_VARIABLES) or (git or run_git)(["rev-parse", "HEAD"], rootdir)


def detect_branch(
    env: Mapping[str, str], rootdir: Path, *, git: GitRunner | None = None
) -> str | None:
    if _clean(env.get("GITHUB_REF_TYPE")) == "tag" or _clean(env.get("CI_COMMIT_TAG")):
        # A tag build: its ref name is the tag's, and no branch is under test.
        return None
    branch = _first(env, BRANCH_VARIABLES)
    if branch is not None:
        return branch
    # Quiet and failing on a detached HEAD, which has no branch to report.
    return (git or run_git)(["symbolic-ref", "--quiet", "--short", "HEAD"], rootdir)


def detect_run_key(env: Mapping[str, str]) -> str | None:
    for system, names in RUN_KEY_SOURCES:
        first = _clean(env.get(names[0]))
        if first is None:
            continue
        rest = [value for value in (_clean(env.get(name)) for name in names[1:]) if value]
        return "-".join([system, first, *rest])
    return None


def _option_or_env(config: pytest.Config, option: str, env: Mapping[str, str]) -> str | None:
    value = _clean(config.getoption(option))
    if value is not None:
        return value
    return _clean(env.get(option.upper()))


def url_from(config: pytest.Config, env: Mapping[str, str]) -> str | None:
    """The server's URL, or None when the plugin is to stay out of the way."""
    url = _option_or_env(config, "riskrank_url", env)
    return url.rstrip("/") if url else None


def load(
    config: pytest.Config, env: Mapping[str, str], *, git: GitRunner | None = None
) -> Settings | None:
    """The session's settings, or None when no riskrank URL is configured."""
    url = url_from(config, env)
    if url is None:
        return None
    problems: list[str] = []
    if not url.startswith(("http://", "https://")):
        problems.append(f"the URL {display_url(url)!r} is not http:// or https://")

    token = _option_or_env(config, "riskrank_token", env)
    if token is None:
        problems.append("no token (set RISKRANK_TOKEN or --riskrank-token)")

    owner = name = None
    explicit_repo = _option_or_env(config, "riskrank_repo", env)
    repo = explicit_repo or detect_repo(env)
    if repo is None:
        problems.append("no repository (set RISKRANK_REPO or --riskrank-repo to OWNER/NAME)")
    elif not _OWNER_NAME.match(repo):
        problems.append(f"the repository {repo!r} is not OWNER/NAME")
    else:
        owner, name = repo.rsplit("/", 1)

    rootdir = Path(config.rootpath)
    commit = _option_or_env(config, "riskrank_commit", env) or detect_commit(env, rootdir, git=git)
    if commit is None:
        problems.append("no commit (set RISKRANK_COMMIT or --riskrank-commit, or run in git)")

    branch = _option_or_env(config, "riskrank_branch", env) or detect_branch(env, rootdir, git=git)
    run_key = _option_or_env(config, "riskrank_run_key", env) or detect_run_key(env)

    timeout = DEFAULT_TIMEOUT_SECONDS
    raw_timeout = _option_or_env(config, "riskrank_timeout", env)
    if raw_timeout is not None:
        try:
            timeout = float(raw_timeout)
        except ValueError:
            problems.append(f"the timeout {raw_timeout!r} is not a number of seconds")
        else:
            if not timeout > 0:
                problems.append(f"the timeout {raw_timeout!r} is not a positive number")
                timeout = DEFAULT_TIMEOUT_SECONDS

    return Settings(
        url=url,
        token=token,
        owner=owner,
        name=name,
        commit=commit,
        branch=branch,
        run_key=run_key,
        timeout=timeout,
        problems=tuple(problems),
        plan=plan_request(config, env),
    )


def _budget_problem(mode: str, budget: float) -> str | None:
    if mode == "time":
        return None if budget > 0 else f"the time budget {budget:g} is not a positive number"
    if mode in ("fraction", "confidence") and not 0 <= budget <= 1:
        return f"the {mode} budget {budget:g} is not a share between 0 and 1"
    return None


def plan_request(config: pytest.Config, env: Mapping[str, str]) -> PlanRequest | None:
    """The plan to ask for, or None when no mode is set (the plugin then only uploads)."""
    mode = _option_or_env(config, "riskrank_mode", env)
    raw_budget = _option_or_env(config, "riskrank_budget", env)
    by = _option_or_env(config, "riskrank_by", env)
    shard = _option_or_env(config, "riskrank_shard", env)
    if mode is None:
        given = [
            f"--riskrank-{name}"
            for name, value in (("budget", raw_budget), ("by", by), ("shard", shard))
            if value is not None
        ]
        if not given:
            return None
        return PlanRequest(
            mode="order",
            problems=(f"{', '.join(given)} needs --riskrank-mode (or RISKRANK_MODE)",),
        )
    problems: list[str] = []
    mode = mode.lower()
    if mode not in MODES:
        problems.append(f"the mode {mode!r} is not one of {', '.join(MODES)}")
    budget: float | None = None
    if raw_budget is not None:
        try:
            budget = float(raw_budget)
        except ValueError:
            problems.append(f"the budget {raw_budget!r} is not a number")
        else:
            problem = _budget_problem(mode, budget)
            if problem is not None:
                problems.append(problem)
    elif mode in ("time", "fraction", "confidence"):
        problems.append(f"the mode {mode!r} needs a budget (--riskrank-budget or RISKRANK_BUDGET)")
    if by is not None:
        by = by.lower()
        if by not in BY:
            problems.append(f"--riskrank-by {by!r} is not one of {', '.join(BY)}")
    if shard is not None:
        found = _SHARD.match(shard)
        if found is None or not 1 <= int(found.group(1)) <= int(found.group(2)):
            problems.append(f"the shard {shard!r} is not I/N with 1 <= I <= N")
    return PlanRequest(mode=mode, budget=budget, by=by, shard=shard, problems=tuple(problems))
