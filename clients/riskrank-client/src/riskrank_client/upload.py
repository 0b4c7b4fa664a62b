"""riskrank-client upload: send test reports from any CI step, after any runner.

It never fails the CI step because riskrank is unreachable or refuses a
report, unless --strict asks it to: riskrank must never break a build."""

from __future__ import annotations

import argparse
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

GZIP_MAGIC = b"\x1f\x8b"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "reports", nargs="+", type=Path, metavar="REPORT", help="JUnit XML or results JSON (.gz)."
    )
    add_connection(parser)
    add_build(parser)
    parser.add_argument(
        "--run-key",
        help="Shared by the shards of one build [RISKRANK_RUN_KEY] default: the CI's build id.",
    )
    parser.add_argument("--plan-id", type=int, help="The plan the run followed.")
    add_fail_open(parser)


def _content_type(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".json"):
        return "application/json"
    return "application/xml"


def _reports(count: int) -> str:
    return f"{count} report" if count == 1 else f"{count} reports"


def run(args: argparse.Namespace, env: Mapping[str, str], cwd: Path) -> int:
    failed = 1 if args.strict else 0
    url = setting(args.url, env, "RISKRANK_URL")
    token = setting(args.token, env, "RISKRANK_TOKEN")
    try:
        repo, commit = locate(
            env,
            cwd,
            required=[("--url/RISKRANK_URL", url), ("--token/RISKRANK_TOKEN", token)],
            repo=("--repo/RISKRANK_REPO", args.repo),
            commit=("--commit/RISKRANK_COMMIT", args.commit),
        )
    except SettingProblem as problem:
        warn(f"riskrank: nothing uploaded, {problem}")
        return failed
    if url is None or token is None:
        return failed  # not reached: locate named them
    params = {"commit": commit}
    run_key = setting(args.run_key, env, "RISKRANK_RUN_KEY") or ci.detect_run_key(env)
    branch_name = branch(args.branch, env, cwd)
    for key, value in (("branch", branch_name), ("run_key", run_key), ("plan_id", args.plan_id)):
        if value is not None:
            params[key] = str(value)

    from riskrank_client import api  # imports requests: only now that something is sent

    client = api.Client(
        url,
        token,
        timeout=whole_call_seconds(args.timeout, args.retries),
        tries=args.retries + 1,
        try_timeout=args.timeout,
    )
    owner, name = repo.rsplit("/", 1)
    failures = 0
    reports: list[Path] = args.reports
    for number, path in enumerate(reports):
        try:
            data = path.read_bytes()
        except OSError as error:
            warn(f"riskrank: cannot read {path}: {error.strerror}")
            failures += 1
            continue
        try:
            receipt = client.upload_report(
                owner,
                name,
                data,
                content_type=_content_type(path),
                gzipped=data.startswith(GZIP_MAGIC),
                params=params,
            )
        except (api.Unreachable, api.TimedOut) as error:
            # The others would wait as long for nothing: one line for them all.
            left = len(reports) - number
            warn(f"riskrank: {error}; {_reports(left)} not uploaded")
            failures += left
            break
        except api.RiskrankError as error:
            warn(f"riskrank: {path} not uploaded: {error}")
            failures += 1
            continue
        said = f"run {receipt.run_id} ({receipt.status}"
        said += f", {receipt.tests} tests)" if receipt.tests is not None else ")"
        print(f"riskrank: uploaded {path}: {said}", flush=True)
    return failed if failures else 0
