"""riskrank-client plan: a commit's plan for any test runner, over HTTP.

Exit codes (the same as the server's `riskrank plan`):
0  follow the plan: with --format list, stdout holds the selected ids in run order;
3  run the whole suite: riskrank cannot name the tests (`run_all`), or could
   not be reached, answered an error or garbage; with --format list nothing is
   printed on stdout, and one line on stderr says why;
2  usage error (bad option, no commit id, ...): run the whole suite too."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riskrank_client.options import SettingProblem, add_connection, branch, locate, setting, warn

if TYPE_CHECKING:
    from riskrank_client.api import PlanAnswer

FOLLOW = 0
USAGE = 2
RUN_ALL = 3

# The plan API's modes (see the riskrank README): `order` keeps every test,
# the others trim to a budget.
MODES = ("order", "time", "fraction", "confidence")
BY = ("tests", "duration")
FORMATS = ("list", "json", "junit")
SHARD = re.compile(r"^(\d+)/(\d+)$")


class UsageError(Exception):
    """A problem with what was asked: exit 2, and run the whole suite."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "repository",
        nargs="?",
        metavar="OWNER/NAME",
        help="[RISKRANK_REPO] default: from the CI (GITHUB_REPOSITORY, CI_PROJECT_PATH, ...).",
    )
    parser.add_argument(
        "sha",
        nargs="?",
        metavar="SHA",
        help="The commit: a full id, or a revision git resolves here (HEAD, a branch) "
        "[RISKRANK_COMMIT] default: from the CI (GITHUB_SHA, ...), else `git rev-parse HEAD`.",
    )
    parser.add_argument("--mode", type=str.lower, choices=MODES, help="[RISKRANK_MODE]")
    parser.add_argument(
        "--budget",
        type=float,
        help="Seconds (time), or a share 0..1 (fraction, confidence) [RISKRANK_BUDGET].",
    )
    parser.add_argument(
        "--by",
        type=str.lower,
        choices=BY,
        help="What the budget counts, and so the order [RISKRANK_BY].",
    )
    parser.add_argument("--shard", metavar="I/N", help="Only shard I of N [RISKRANK_SHARD].")
    parser.add_argument(
        "--branch",
        help="The branch being built [RISKRANK_BRANCH] default: from the CI, else git.",
    )
    parser.add_argument(
        "--tests-file",
        metavar="FILE",
        help="The collected test ids, one a line ('-': stdin; blank and # lines skipped); "
        "the plan then covers exactly them.",
    )
    parser.add_argument(
        "--format",
        dest="output",
        choices=FORMATS,
        default="list",
        help="list (default): the selected ids in run order; json: the answer; "
        "junit: the selected tests as a JUnit XML suite.",
    )
    parser.add_argument(
        "--summary",
        metavar="FILE",
        help='Append a Markdown summary of the plan to FILE, e.g. "$GITHUB_STEP_SUMMARY" '
        "[RISKRANK_SUMMARY]; a file that cannot be written is a warning.",
    )
    add_connection(parser)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{round(seconds)} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _percent(probability: float) -> str:
    value = 100 * probability
    return f"{value:.0f}%" if value >= 10 or value == 0 else f"{value:.1f}%"


def summary(plan: Mapping[str, Any], why_all: str | None = None) -> str:
    """The plan as a Markdown snippet for a CI job's summary (GitHub's
    $GITHUB_STEP_SUMMARY): one line of figures, as riskrank's commit status
    has them, and a table of the selected tests' first ten."""
    commit = str(plan.get("commit") or "")[:12]
    if why_all is not None:
        return f"### riskrank: the whole suite runs\n\n`{commit}`: {why_all}.\n"
    selected = plan.get("selected")
    total = plan.get("total")
    saved = float(plan.get("duration_dropped") or 0.0)
    miss = float(plan.get("miss_probability") or 0.0)
    status = str(plan.get("status"))
    if plan.get("model_version") is not None:
        status += f", model v{plan['model_version']}"
    lines = [
        f"### riskrank plan for `{commit}`",
        "",
        f"**{selected} of {total} tests selected**, ~{_duration(saved)} of CI time saved, "
        f"miss risk {_percent(miss)} ({plan.get('mode')}, {status}).",
    ]
    chosen = [test for test in plan.get("tests") or [] if test.get("selected")]
    if chosen:
        lines += ["", "| # | test | probability | why |", "|---|---|---|---|"]
        for test in chosen[:10]:
            probability = test.get("probability")
            shown = f"{probability:.3f}" if isinstance(probability, int | float) else ""
            reason = str(test.get("reason") or "").replace("|", "\\|")
            name = str(test.get("test")).replace("|", "\\|")
            lines.append(f"| {test.get('rank')} | `{name}` | {shown} | {reason} |")
        if len(chosen) > 10:
            lines.append(f"| | … and {len(chosen) - 10} more | | |")
    return "\n".join(lines) + "\n"


def plan_summary(data: Mapping[str, Any], plan: PlanAnswer) -> str:
    """`summary` of an answer as riskrank sent it (`data`) and as checked
    (`plan`): what the client and the pytest plugin write for the CI job."""
    return summary(data, _why_all(plan) if plan.run_all else None)


def write_summary(path: str, text: str, *, say: Callable[[str], None] = warn) -> None:
    """Append to `path`; a warning (to `say`), never a failure, when it cannot be."""
    try:
        with open(path, "a", encoding="utf-8") as file:
            file.write(text)
    except OSError as error:
        say(f"riskrank: could not write the summary to {path}: {error.strerror or error}")


def read_tests(source: str) -> list[str]:
    """One test id a line ("-": standard input); blank lines and # comments skipped."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else str(error)
        raise UsageError(f"cannot read {source}: {reason}") from None
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def junit(plan: Mapping[str, Any]) -> str:
    """The selected tests as a JUnit XML suite, in run order: classname and
    name split at the id's last "::" (the whole id as name without one), and
    the plan's figures as properties (none for what the plan leaves unset,
    such as the shard of an unsharded plan). A list for tools that take one
    as JUnit, not a report of outcomes: nothing has run yet."""
    from xml.etree import ElementTree  # only this format needs it

    tests = plan.get("tests") or []
    selected = [test for test in tests if test.get("selected")]
    suite = ElementTree.Element(
        "testsuite",
        name=f"riskrank plan {plan.get('plan_id') or 'fallback'} for {plan.get('commit')}",
        tests=str(len(selected)),
    )
    properties = ElementTree.SubElement(suite, "properties")
    for key in ("plan_id", "status", "run_all", "mode", "budget", "shard", "total", "selected"):
        value = plan.get(key)
        if value is not None:
            ElementTree.SubElement(properties, "property", name=key, value=_text(value))
    for test in selected:
        classname, _, name = str(test["test"]).rpartition("::")
        case = ElementTree.SubElement(
            suite,
            "testcase",
            classname=classname,
            name=name,
            time=f"{test.get('duration') or 0:.3f}",
        )
        case_properties = ElementTree.SubElement(case, "properties")
        for key in ("rank", "probability", "rule", "reason"):
            value = test.get(key)
            if value is not None:
                ElementTree.SubElement(case_properties, "property", name=key, value=_text(value))
    root = ElementTree.Element("testsuites")
    root.append(suite)
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root, "unicode")


def _text(value: object) -> str:
    # JSON's spelling for booleans, as the answer has them.
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _request(args: argparse.Namespace, env: Mapping[str, str], cwd: Path) -> dict[str, Any]:
    """The POST body; UsageError for a bad option."""
    body: dict[str, Any] = {}
    mode = setting(args.mode, env, "RISKRANK_MODE")
    if mode is not None:
        if mode.lower() not in MODES:
            raise UsageError(f"the mode {mode!r} is not one of {', '.join(MODES)}")
        body["mode"] = mode.lower()
    budget = args.budget if args.budget is not None else setting(None, env, "RISKRANK_BUDGET")
    if budget is not None:
        try:
            body["budget"] = float(budget)
        except ValueError:
            raise UsageError(f"the budget {budget!r} is not a number") from None
    by = setting(args.by, env, "RISKRANK_BY")
    if by is not None:
        if by.lower() not in BY:
            raise UsageError(f"--by {by!r} is not one of {', '.join(BY)}")
        body["by"] = by.lower()
    shard = setting(args.shard, env, "RISKRANK_SHARD")
    if shard is not None:
        found = SHARD.match(shard)
        if found is None or not 1 <= int(found.group(1)) <= int(found.group(2)):
            raise UsageError(f"the shard {shard!r} is not I/N with 1 <= I <= N")
        body["shard"] = shard
    branch_name = branch(args.branch, env, cwd)
    if branch_name is not None:
        body["branch"] = branch_name
    if args.tests_file is not None:
        body["tests"] = read_tests(args.tests_file)
    return body


def _why_all(plan: PlanAnswer) -> str:
    """Why riskrank asks for the whole suite."""
    if plan.message:
        # The server's sentence may end by saying it too: once is enough.
        return str(plan.message).removesuffix(": run the whole suite")
    if plan.full_run:
        return f"full run: {plan.full_run_reason or 'a rule asked for every test'}"
    return f"riskrank cannot name the tests to run (status {plan.status})"


def run(args: argparse.Namespace, env: Mapping[str, str], cwd: Path) -> int:
    url = setting(args.url, env, "RISKRANK_URL")
    token = setting(args.token, env, "RISKRANK_TOKEN")
    try:
        repository, commit = locate(
            env,
            cwd,
            required=[("--url/RISKRANK_URL", url), ("--token/RISKRANK_TOKEN", token)],
            repo=("OWNER/NAME (or RISKRANK_REPO)", args.repository),
            commit=("SHA (or RISKRANK_COMMIT)", args.sha),
        )
        body = _request(args, env, cwd)
    except (SettingProblem, UsageError) as error:
        warn(f"riskrank: {error}; run the whole suite")
        return USAGE
    if url is None:
        return USAGE  # not reached: locate named it

    from riskrank_client import api  # imports requests: only now that something is sent

    owner, name = repository.rsplit("/", 1)
    client = api.Client(url, token, timeout=args.timeout)
    try:
        data, plan = client.fetch_plan_json(owner, name, commit, body)
    except api.Refused as error:
        warn(f"riskrank: {error}; run the whole suite")
        # 400 (a parameter riskrank cannot read) and 422 (one past its bounds,
        # a branch too long, say): the parameters are wrong, a usage error;
        # the rest is riskrank's.
        return USAGE if error.status_code in (400, 422) else RUN_ALL
    except api.RiskrankError as error:
        warn(f"riskrank: {error}; run the whole suite")
        return RUN_ALL

    if plan.run_all:
        warn(f"riskrank: run the whole suite: {_why_all(plan)}")
    elif plan.message:
        warn(f"riskrank: {plan.message}")
    summary_file = setting(args.summary, env, "RISKRANK_SUMMARY")
    if summary_file:
        write_summary(summary_file, plan_summary(data, plan))
    if args.output == "json":
        print(json.dumps(data, indent=2))
    elif args.output == "junit":
        print(junit(data))
    elif not plan.run_all:
        sys.stdout.write("".join(f"{test.test}\n" for test in plan.tests if test.selected))
    return RUN_ALL if plan.run_all else FOLLOW
