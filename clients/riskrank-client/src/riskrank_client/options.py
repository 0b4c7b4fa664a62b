"""What the commands share: the connection options, settings read from an
option or else a RISKRANK_* variable, and one-line messages on stderr."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from riskrank_client.ci import clean

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
    return clean(given) or clean(env.get(variable))


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
