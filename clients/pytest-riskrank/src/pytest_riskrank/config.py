"""Where the plugin's settings come from: command-line options, then RISKRANK_*
variables, then what the CI system (or git) says about the build (riskrank
client's detection, `riskrank_client.ci`, shared with its commands).

Everything here reads an explicit `env` mapping so it can be tested without
touching the process environment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from riskrank_client.ci import (
    OWNER_NAME,
    GitRunner,
    clean,
    detect_branch,
    detect_commit,
    detect_repo,
    detect_run_key,
    display_url,
    resolve_commit,
    unresolved_commit,
)
from riskrank_client.plan import BY, MODES, SHARD

DEFAULT_TIMEOUT_SECONDS = 10.0


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
    # Where the plan's Markdown summary is appended (RISKRANK_SUMMARY, else
    # GitHub Actions' GITHUB_STEP_SUMMARY); None: nowhere.
    summary: str | None = None

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


def _option_or_env(config: pytest.Config, option: str, env: Mapping[str, str]) -> str | None:
    value = clean(config.getoption(option))
    if value is not None:
        return value
    return clean(env.get(option.upper()))


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
    elif not OWNER_NAME.match(repo):
        problems.append(f"the repository {repo!r} is not OWNER/NAME")
    else:
        owner, name = repo.rsplit("/", 1)

    rootdir = Path(config.rootpath)
    revision = _option_or_env(config, "riskrank_commit", env) or detect_commit(
        env, rootdir, git=git
    )
    commit = None
    if revision is None:
        problems.append("no commit (set RISKRANK_COMMIT or --riskrank-commit, or run in git)")
    else:
        # riskrank takes full commit ids only: HEAD or a short id as git names it.
        commit = resolve_commit(revision, rootdir, git=git)
        if commit is None:
            problems.append(f"no commit: {unresolved_commit(revision)}")

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
        summary=clean(env.get("RISKRANK_SUMMARY")) or clean(env.get("GITHUB_STEP_SUMMARY")),
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
        found = SHARD.match(shard)
        if found is None or not 1 <= int(found.group(1)) <= int(found.group(2)):
            problems.append(f"the shard {shard!r} is not I/N with 1 <= I <= N")
    return PlanRequest(mode=mode, budget=budget, by=by, shard=shard, problems=tuple(problems))
