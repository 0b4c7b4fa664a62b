"""riskrank plan: a commit's plan for any test runner, from the database."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Annotated, Any
from xml.etree import ElementTree

import typer

from scheduler.cli.common import fail, migrated_database, settings
from scheduler.models import Provider, Repository
from scheduler.services import plans, repos


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
    for key in ("plan_id", "status", "mode", "budget", "shard", "total", "selected"):
        ElementTree.SubElement(properties, "property", name=key, value=str(plan[key]))
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
            ElementTree.SubElement(case_properties, "property", name=key, value=str(test[key]))
    root = ElementTree.Element("testsuites")
    root.append(suite)
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root, "unicode")


def plan(
    full_name: Annotated[str, typer.Argument(metavar="OWNER/NAME")],
    sha: Annotated[str, typer.Argument(help="The commit to plan.")],
    mode: Annotated[str | None, typer.Option(help="order | time | fraction | confidence.")] = None,
    budget: Annotated[
        float | None,
        typer.Option(help="Seconds (time), or a share 0..1 (fraction, confidence)."),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(
            help="What the budget counts, and so the order: tests (by probability) | "
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
        Format, typer.Option("--format", help="list: selected ids in run order.")
    ] = Format.LIST,
    provider: Annotated[Provider | None, typer.Option(help="If the name is ambiguous.")] = None,
) -> None:
    """Print the plan for a commit: `list` gives the selected test ids in the
    order to run them, one a line; `json` the whole plan (as the API answers
    it); `junit` the selected tests as a JUnit XML suite. Scores the commit
    first if need be; falls back to everything rather than fail."""
    config = settings()
    database = migrated_database(config)
    with database.session() as session:
        try:
            record: Repository = repos.resolve_repository(
                session, full_name=full_name, provider=provider
            )
        except repos.RepositoryError as error:
            fail(str(error))
        repository = plans.RepositoryRef(
            id=record.id, default_branch=record.default_branch, settings=dict(record.settings)
        )
    request = plans.PlanRequest(
        mode=mode,
        budget=budget,
        by=by,
        shard=shard,
        branch=branch,
        tests=_read_tests(tests_file) if tests_file is not None else None,
    )
    try:
        answer = plans.plan_for(
            database,
            repository=repository,
            sha=plans.check_sha(sha),
            request=request,
            defaults=plans.PlanDefaults(
                wait_seconds=config.plan_wait_seconds,
                exploration_rate=config.plan_exploration_rate,
                recent_failures=config.plan_recent_failures,
                full_run_every=config.plan_full_run_every,
            ),
        )
    except plans.PlanParameterError as error:
        fail(error.message, code=2)
    if answer["message"]:
        typer.echo(f"riskrank: {answer['message']}", err=True)
    if output is Format.JSON:
        typer.echo(json.dumps(answer, indent=2))
    elif output is Format.JUNIT:
        typer.echo(junit(answer))
    else:
        for test in answer["tests"]:
            if test["selected"]:
                typer.echo(test["test"])
