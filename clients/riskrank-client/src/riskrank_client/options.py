"""What the commands share: the connection options, settings read from an
option or else a RISKRANK_* variable, and one-line messages on stderr."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from riskrank_client import ci

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_RETRIES = 2
# The pause before the n-th retry: 0.5 s, doubling, at most 4 s (api.Client).
BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 4.0


def warn(line: str) -> None:
    # Plain text, one line: CI logs show it as is (no markup, no wrapping).
    print(line, file=sys.stderr, flush=True)


def setting(given: str | None, env: Mapping[str, str], variable: str) -> str | None:
    """The option's value, else the variable's; blank counts as unset."""
    return ci.clean(given) or ci.clean(env.get(variable))


class SettingProblem(Exception):
    """A setting is missing or malformed; str() says which, for one line."""


def locate(
    env: Mapping[str, str],
    cwd: Path,
    *,
    required: Sequence[tuple[str, str | None]],
    repo: tuple[str, str | None] = ("--repo/RISKRANK_REPO", None),
    commit: tuple[str, str | None] = ("--commit/RISKRANK_COMMIT", None),
) -> tuple[str, str]:
    """The repository (OWNER/NAME) and the full commit id of the build: from
    the given values (`repo`, `commit`: label and value), RISKRANK_REPO and
    RISKRANK_COMMIT, then the CI and git. SettingProblem when one of them or
    of the `required` (label, value) pairs is missing, or is not what
    riskrank takes."""
    repository = setting(repo[1], env, "RISKRANK_REPO") or ci.detect_repo(env)
    revision = setting(commit[1], env, "RISKRANK_COMMIT") or ci.detect_commit(env, cwd)
    needed = [*required, (repo[0], repository), (commit[0], revision)]
    missing = [label for label, value in needed if not value]
    if missing or repository is None or revision is None:
        raise SettingProblem(f"missing {', '.join(missing)}")
    if not ci.OWNER_NAME.match(repository):
        raise SettingProblem(f"the repository {repository!r} is not OWNER/NAME")
    resolved = ci.resolve_commit(revision, cwd)
    if resolved is None:
        raise SettingProblem(ci.unresolved_commit(revision))
    return repository, resolved


def branch(given: str | None, env: Mapping[str, str], cwd: Path) -> str | None:
    return setting(given, env, "RISKRANK_BRANCH") or ci.detect_branch(env, cwd)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.1 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0.1")
    return value


def _retries(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 5:
        raise argparse.ArgumentTypeError(f"{value} is not in the range 0..5")
    return value


def add_connection(parser: argparse.ArgumentParser, *, token: bool = True) -> None:
    parser.add_argument("--url", help="riskrank's base URL [RISKRANK_URL].")
    if token:
        parser.add_argument(
            "--token",
            help="API token [RISKRANK_TOKEN]; prefer the variable, options show in process lists.",
        )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT_SECONDS,
        help=f"Seconds per request (default {DEFAULT_TIMEOUT_SECONDS:g}).",
    )


def add_build(parser: argparse.ArgumentParser) -> None:
    """--repo, --commit, --branch: from the CI system (or git) by default."""
    parser.add_argument(
        "--repo",
        metavar="OWNER/NAME",
        help="[RISKRANK_REPO] default: from the CI (GITHUB_REPOSITORY, CI_PROJECT_PATH, ...).",
    )
    parser.add_argument(
        "--commit",
        help="The commit: a full id, or a revision git resolves here (HEAD, a branch) "
        "[RISKRANK_COMMIT] default: from the CI (GITHUB_SHA, CI_COMMIT_SHA, ...), "
        "else `git rev-parse HEAD`.",
    )
    parser.add_argument(
        "--branch",
        help="[RISKRANK_BRANCH] default: from the CI (GITHUB_REF_NAME, ...), else git.",
    )


def add_fail_open(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retries",
        type=_retries,
        default=DEFAULT_RETRIES,
        help=f"Retries on network errors and 5xx answers, 0..5 (default {DEFAULT_RETRIES}).",
    )
    parser.add_argument(
        "--strict",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Exit 1 when sending fails (default: one warning line, exit 0).",
    )


def whole_call_seconds(timeout: float, retries: int) -> float:
    """The longest a call with per-try `timeout` and `retries` may take."""
    pauses = sum(
        min(BACKOFF_SECONDS * 2.0**number, MAX_BACKOFF_SECONDS) for number in range(retries)
    )
    return timeout * (retries + 1) + float(pauses)
