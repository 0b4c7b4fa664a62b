"""riskrank plan: a commit's plan for any test runner, from the database."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Annotated, Any
from xml.etree import ElementTree

import typer

from scheduler.cli.common import (
    RUN_ALL,
    USAGE,
    By,
    Mode,
    ProviderOption,
    RepoArgument,
    fail,
    migrated_database,
    settings,
)

# `plan` prints the plan and exits 0 when the plan names the tests to run;
# it exits RUN_ALL (nothing on stdout with --format list) when riskrank
# cannot name them and the whole suite must run, and USAGE for a bad option
# or commit. A recipe runs everything on any other status than 0.


class Format(enum.StrEnum):
    LIST = "list"
    JSON = "json"
    JUNIT = "junit"


def _read_tests(path: Path) -> list[str]:
    """One test id per line ("-": standard input); blank lines and # comments skipped."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as error:
        fail(f"cannot read {path}: {error}")
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _text(value: object) -> str:
    # JSON's spelling for booleans, as the answer has them.
    return json.dumps(value) if isinstance(value, bool) else str(value)


def junit(plan: dict[str, Any]) -> str:
    """The selected tests as a JUnit XML suite, in run order: classname and
    name split at the id's last "::" (the whole id as name without one), and
    the plan's figures as properties. A list for tools that take one as JUnit,
    not a report of outcomes: nothing has run yet."""
    selected = [test for test in plan["tests"] if test["selected"]]
    suite = ElementTree.Element(
        "testsuite",
        name=f"riskrank plan {plan['plan_id'] or 'fallback'} for {plan['commit']}",
        tests=str(len(selected)),
    )
    properties = ElementTree.SubElement(suite, "properties")
    for key in ("plan_id", "status", "run_all", "mode", "budget", "shard", "total", "selected"):
        # A figure the plan does not have (no shard, no budget) is left out,
        # not written as "None"; the light client writes the same properties.
        if plan.get(key) is not None:
            ElementTree.SubElement(properties, "property", name=key, value=_text(plan[key]))
    for test in selected:
        classname, _, name = test["test"].rpartition("::")
        case = ElementTree.SubElement(
            suite,
            "testcase",
            classname=classname,
            name=name,
            time=f"{test['duration'] or 0:.3f}",
        )
        case_properties = ElementTree.SubElement(case, "properties")
        for key in ("rank", "probability", "rule", "reason"):
            if test[key] is not None:
                ElementTree.SubElement(
                    case_properties, "property", name=key, value=_text(test[key])
                )
    root = ElementTree.Element("testsuites")
    root.append(suite)
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root, "unicode")


def run_all(answer: dict[str, Any]) -> bool:
    """Whether the answer says to run the whole suite. An answer without
    the `run_all` field (from before it was added) says so by naming no
    test (total 0)."""
    said = answer.get("run_all")
    return bool(said) if said is not None else answer["total"] == 0


def _why_run_all(answer: dict[str, Any]) -> str:
    why = str(
        answer.get("message")
        or answer.get("full_run_reason")
        or "riskrank cannot name the tests to run"
    )
    return why if why.endswith("run the whole suite") else f"{why}: run the whole suite"


def miss_risk_line(answer: dict[str, Any], dropped: int) -> str:
    """What the dropped tests may hide: the expected failures among them,
    their 95% bound (from a server that sends it) and the chance that at
    least one of them fails."""
    bound = answer.get("failures_dropped_bound")
    return (
        f"{dropped} test{'' if dropped == 1 else 's'} dropped: miss risk "
        f"{answer['expected_failures_dropped']:.2f} expected failures"
        + ("" if bound is None else f" (95% bound {bound})")
        + f", {answer['miss_probability']:.1%} chance that at least one fails"
    )


def selected_by_line(counts: dict[str, int]) -> str:
    """How many tests each source selected: the budget's own, the
    exploration sample, escalation, a full run (those with none left out)."""
    parts = [f"{counts.get('budget', 0)} by the budget"]
    for key, label in (
        ("exploration", "by exploration"),
        ("escalation", "by escalation"),
        ("full_run", "by a full run"),
    ):
        if counts.get(key):
            parts.append(f"{counts[key]} {label}")
    return "selected " + ", ".join(parts)


def plan(
    full_name: RepoArgument,
    sha: Annotated[
        str,
        typer.Argument(
            metavar="SHA",
            help="The commit to plan: its full id, or a prefix (4 hex digits or more) of one "
            "riskrank knows.",
        ),
    ],
    mode: Annotated[
        Mode | None,
        typer.Option(help="How to choose the tests (default: the repository's policy)."),
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(help="Seconds (time), or a share 0..1 (fraction, confidence)."),
    ] = None,
    by: Annotated[
        By | None,
        typer.Option(
            help="What the budget counts, and so the order: tests (by probability) or "
            "duration (probability per second)."
        ),
    ] = None,
    shard: Annotated[str | None, typer.Option(help="i/n: only shard i of n.")] = None,
    branch: Annotated[str | None, typer.Option(help="The branch being built.")] = None,
    tests_file: Annotated[
        Path | None,
        typer.Option(help="The collected test ids, one a line ('-': stdin); the plan covers them."),
    ] = None,
    output: Annotated[
        Format,
        typer.Option(
            "--format",
            help="list: the selected ids in run order; json: the whole plan; junit: a JUnit "
            "XML suite of the selected tests.",
        ),
    ] = Format.LIST,
    provider: ProviderOption = None,
) -> None:
    """Print the plan for a commit: `list` gives the selected test ids in the
    order to run them, one a line; `json` the whole plan (as the API answers
    it); `junit` the selected tests as a JUnit XML suite. Scores the commit
    first if need be; falls back to everything rather than fail.

    Exit status: 0 follow the plan; 2 a bad option or commit;
    3 run the whole suite, riskrank cannot name the tests (`list` prints none)."""
    # Imported here: planning pulls in numpy and LightGBM, which the other
    # commands' start-up need not pay for.
    from scheduler import commit_ids
    from scheduler.services import plans, repos, trimming

    config = settings()
    database = migrated_database(config)
    with database.session() as session:
        try:
            record = repos.resolve_repository(session, full_name=full_name, provider=provider)
        except repos.RepositoryError as error:
            fail(str(error))
        try:
            commit = commit_ids.resolve(session, record, sha)
        except commit_ids.CommitIdError as error:
            fail(error.message, code=USAGE)
        repository = plans.RepositoryRef(
            id=record.id,
            default_branch=record.default_branch,
            settings=dict(record.settings),
            escalation=trimming.escalation_of(record),
            expansion_share=trimming.expansion_share_of(record),
            watched_failure_rate=trimming.watched_failure_rate_of(record),
            expansion_catch=trimming.expansion_catch_of(record),
            confidence_scale=trimming.confidence_scale_of(record),
        )
    request = plans.PlanRequest(
        mode=mode.value if mode is not None else None,
        budget=budget,
        by=by.value if by is not None else None,
        shard=shard,
        branch=branch,
        tests=_read_tests(tests_file) if tests_file is not None else None,
    )
    try:
        answer = plans.plan_for(
            database,
            repository=repository,
            sha=commit,
            request=request,
            defaults=plans.PlanDefaults(
                wait_seconds=config.plan_wait_seconds,
                exploration_rate=config.plan_exploration_rate,
                recent_failures=config.plan_recent_failures,
                full_run_every=config.plan_full_run_every,
                expand_after=config.plan_expand_after,
            ),
        )
    except plans.PlanParameterError as error:
        fail(error.message, code=USAGE)
    whole_suite = run_all(answer)
    if whole_suite:
        typer.echo(f"riskrank: {_why_run_all(answer)}", err=True)
    elif answer["message"]:
        typer.echo(f"riskrank: {answer['message']}", err=True)
    dropped = answer["total"] - sum(1 for test in answer["tests"] if test["selected"])
    if answer.get("escalation"):
        typer.echo(f"riskrank: trimming escalated: {answer['escalation']}", err=True)
    if answer.get("changes_note"):
        typer.echo(f"riskrank: {answer['changes_note']}", err=True)
    if not whole_suite and answer["shard"] is None:
        typer.echo(f"riskrank: {selected_by_line(answer['selected_by'])}", err=True)
    if not whole_suite and answer["shard"] is None and dropped > 0:
        typer.echo(f"riskrank: {miss_risk_line(answer, dropped)}", err=True)
    if output is Format.JSON:
        typer.echo(json.dumps(answer, indent=2))
    elif output is Format.JUNIT:
        typer.echo(junit(answer))
    elif not whole_suite:
        for test in answer["tests"]:
            if test["selected"]:
                typer.echo(test["test"])
    if whole_suite:
        raise typer.Exit(RUN_ALL)
