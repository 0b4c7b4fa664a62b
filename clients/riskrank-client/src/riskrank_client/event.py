"""riskrank-client event: tell riskrank about the commit under test with the
generic CI event, built from git in the checkout and signed with the
repository's webhook secret. Fails open like upload: problems are one
warning line and exit 0, unless --strict."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from riskrank_client import ci
from riskrank_client.options import (
    SettingProblem,
    add_build,
    add_connection,
    add_fail_open,
    branch,
    locate,
    setting,
    warn,
    whole_call_seconds,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection(parser, token=False)
    add_build(parser)
    parser.add_argument(
        "--secret",
        help="The repository's webhook secret (`riskrank repo add --secret`) [RISKRANK_SECRET]; "
        "prefer the variable.",
    )
    parser.add_argument(
        "--delivery-id",
        help="The event's id: a resend with the same id is stored once "
        "[RISKRANK_DELIVERY_ID] default: the CI's build id (RISKRANK_RUN_KEY, GITHUB_RUN_ID, ...).",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="Print the body on stdout and send nothing (no --url or --secret needed).",
    )
    add_fail_open(parser)


def run(args: argparse.Namespace, env: Mapping[str, str], cwd: Path) -> int:
    failed = 1 if args.strict else 0
    url = setting(args.url, env, "RISKRANK_URL")
    secret = setting(args.secret, env, "RISKRANK_SECRET")
    required = [("--url/RISKRANK_URL", url), ("--secret/RISKRANK_SECRET", secret)]
    try:
        repo, commit = locate(
            env,
            cwd,
            required=[] if args.dry_run else required,
            repo=("--repo/RISKRANK_REPO", args.repo),
            commit=("--commit/RISKRANK_COMMIT", args.commit),
        )
    except SettingProblem as problem:
        warn(f"riskrank: no event sent, {problem}")
        return failed

    # Not before: `--help` stays fast.
    from riskrank_client.commit_event import (
        DELIVERY_HEADER,
        SIGNATURE_HEADER,
        commit_facts,
        event_body,
        signature,
    )

    facts = commit_facts(commit, cwd)
    for note in facts.notes:
        warn(f"riskrank: {note}")
    body = event_body(repo, facts, branch=branch(args.branch, env, cwd))
    if args.dry_run:
        sys.stdout.write(body.decode("utf-8") + "\n")
        return 0
    if url is None or secret is None:
        return failed  # not reached: locate named them
    headers = {SIGNATURE_HEADER: signature(secret, body)}
    delivery = (
        setting(args.delivery_id, env, "RISKRANK_DELIVERY_ID")
        or setting(None, env, "RISKRANK_RUN_KEY")
        or ci.detect_run_key(env)
    )
    if delivery is not None:
        headers[DELIVERY_HEADER] = delivery

    from riskrank_client import api  # imports requests: only now that something is sent

    client = api.Client(
        url,
        None,
        timeout=whole_call_seconds(args.timeout, args.retries),
        tries=args.retries + 1,
        try_timeout=args.timeout,
    )
    try:
        receipt = client.send_event(body, headers=headers)
    except api.RiskrankError as error:
        warn(f"riskrank: no event sent for {commit}: {error}")
        return failed
    changed = len(facts.files) if facts.files is not None else "no"
    said = f"{receipt.status}, {changed} changed files"
    print(f"riskrank: event {receipt.run_id} for {commit} ({said})", flush=True)
    return 0
