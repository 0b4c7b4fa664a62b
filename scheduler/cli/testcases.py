"""riskrank tests: a repository's riskiest tests for a commit, and its flaky ones."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from scheduler.cli.common import (
    USAGE,
    JsonFlag,
    ProviderOption,
    RepoArgument,
    console,
    fail,
    migrated_database,
    settings,
)

app = typer.Typer(help="A repository's riskiest and flaky tests.", no_args_is_help=True)

LimitOption = Annotated[int, typer.Option(min=0, help="How many tests to list.")]


@app.command()
def risky(
    full_name: RepoArgument,
    sha: Annotated[
        str | None,
        typer.Argument(
            metavar="SHA",
            help="A commit's full id, or a prefix (4 hex digits or more) of one "
            "(default: the commit riskrank planned last).",
        ),
    ] = None,
    limit: LimitOption = 20,
    provider: ProviderOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The tests most likely to fail on a commit, riskiest first, with the
    probability its newest plan gave each and why."""
    from scheduler import commit_ids
    from scheduler.services import overview, plan_report, repos

    with migrated_database(settings()).session() as session:
        try:
            repository = repos.resolve_repository(session, full_name=full_name, provider=provider)
            wanted = sha or overview.newest_planned_commit(session, repository.id)
            if wanted is None:
                fail(
                    f"riskrank has planned no commit of {repository.full_name} yet "
                    "(a worker scores a commit after its push, the plan API on request)"
                )
            view = plan_report.newest_plan(session, repository, wanted, limit=limit)
        except commit_ids.UnknownCommit as error:
            fail(error.message)
        except commit_ids.CommitIdError as error:
            fail(error.message, USAGE)
        except (repos.RepositoryError, plan_report.PlanNotFound) as error:
            fail(str(error))
    rows = [
        {
            "rank": item.rank,
            "test": item.test,
            "probability": item.probability,
            "reason": item.reason,
        }
        for item in view.items
    ]
    if as_json:
        document = {
            "repository": view.repository,
            "commit": view.commit,
            "plan_id": view.plan_id,
            "model_version": view.model_version,
            "total": view.total,
            "tests": rows,
        }
        typer.echo(json.dumps(document, indent=2))
        return
    model = f"model v{view.model_version}" if view.model_version is not None else "the heuristic"
    console.print(
        f"{escape(view.repository)} at {view.commit[:12]}: the {len(rows)} riskiest of "
        f"{view.total:,} tests (plan {view.plan_id}, {model})",
        highlight=False,
    )
    table = Table("rank", "test", "probability", "why")
    for row in rows:
        table.add_row(
            str(row["rank"]),
            escape(str(row["test"])),
            f"{row['probability']:.3f}",
            escape(str(row["reason"] or "")),
        )
    console.print(table)


@app.command()
def flaky(
    full_name: RepoArgument,
    limit: LimitOption = 50,
    provider: ProviderOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The tests that failed and then passed on the same commit, the most
    often flaky first, with how often they ran and failed."""
    from scheduler.services import overview, repos

    with migrated_database(settings()).session() as session:
        try:
            repository = repos.resolve_repository(session, full_name=full_name, provider=provider)
        except repos.RepositoryError as error:
            fail(str(error))
        rows = overview.flaky_tests(session, repository_id=repository.id, limit=limit)
        name = repository.full_name
    if as_json:
        typer.echo(json.dumps([row.as_json() for row in rows], indent=2))
        return
    if not rows:
        console.print(f"no flaky test in {escape(name)}", highlight=False)
        return
    table = Table("test", "flaky runs", "runs", "failures", "flips", "last failure (UTC)")
    for row in rows:
        table.add_row(
            escape(row.test),
            str(row.flaky_runs),
            str(row.runs),
            str(row.failures),
            str(row.flips),
            row.last_failure_at.strftime("%Y-%m-%d %H:%M") if row.last_failure_at else "-",
        )
    console.print(table)
