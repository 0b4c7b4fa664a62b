"""riskrank plan-log: what riskrank planned for a commit, and how it did
(`riskrank plan` asks for a plan now; this reads the ones made)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

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

if TYPE_CHECKING:
    from scheduler.services.plan_report import PlanView

app = typer.Typer(
    help="Show the plans riskrank made and how they did (`plan` makes one now).",
    no_args_is_help=True,
)

ShaArgument = Annotated[
    str,
    typer.Argument(
        metavar="SHA", help="A commit's full id, or a prefix (4 hex digits or more) of one."
    ),
]
LimitOption = Annotated[int, typer.Option(min=0, help="How many tests to list, riskiest first.")]


def _figure(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _selected(value: bool | None) -> str:
    return "-" if value is None else "[green]yes[/]" if value else "[dim]no[/]"


@app.command()
def show(
    full_name: RepoArgument,
    sha: ShaArgument,
    limit: LimitOption = 50,
    provider: ProviderOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The commit's newest plan: status, model, each test's rank, failure
    probability, whether the policy last applied selected it and why, and,
    once runs that followed the plan reported, its evaluation."""
    # Imported here: the plans' records pull in numpy, which the other
    # commands' start-up need not pay for.
    from scheduler import commit_ids
    from scheduler.services import plan_report, repos

    with migrated_database(settings()).session() as session:
        try:
            repository = repos.resolve_repository(session, full_name=full_name, provider=provider)
            view = plan_report.newest_plan(session, repository, sha, limit=limit)
        except commit_ids.UnknownCommit as error:
            fail(error.message)
        except commit_ids.CommitIdError as error:
            fail(error.message, code=USAGE)
        except (repos.RepositoryError, plan_report.PlanNotFound) as error:
            fail(str(error))
    if as_json:
        typer.echo(json.dumps(view.as_json(), indent=2))
        return
    _print(view)


def _print(view: PlanView) -> None:
    model = f"model v{view.model_version}" if view.model_version is not None else "no model"
    console.print(
        f"plan {view.plan_id} of {escape(view.repository)} at {view.commit[:12]}"
        + (f" ({escape(view.branch)})" if view.branch else "")
        + f": [bold]{view.status}[/], {model}, {view.total:,} tests"
        + (f", {view.selected:,} selected" if view.selected is not None else ""),
        highlight=False,
    )
    if view.policy:
        shown = ", ".join(
            f"{key} {value}"
            for key, value in view.policy.items()
            if value is not None and not isinstance(value, dict | list)
        )
        console.print(f"policy: {escape(shown)}", highlight=False)
    if view.changes_note:
        console.print(f"changes: {escape(view.changes_note)}", highlight=False, soft_wrap=True)
    table = Table("rank", "test", "probability", "selected", "rule", "reason")
    for item in view.items:
        table.add_row(
            str(item.rank),
            escape(item.test),
            f"{item.probability:.3f}",
            _selected(item.selected),
            escape(item.rule or "-"),
            escape(item.reason or ""),
        )
    console.print(table)
    if len(view.items) < view.total:
        console.print(
            f"the {len(view.items)} riskiest of {view.total:,} tests (--limit to see more)",
            highlight=False,
        )
    _print_evaluation(view.evaluation)
    _print_trimming(view.trimming)


def _print_trimming(state: dict[str, Any] | None) -> None:
    from scheduler.services import trimming

    console.print(f"repository: {escape(trimming.sentence(state))}", highlight=False)
    if state and state.get("escalation"):
        console.print(f"[bold yellow]escalated:[/] {escape(state['escalation'])}", highlight=False)


def _print_evaluation(evaluation: dict[str, Any] | None) -> None:
    if not evaluation:
        console.print("no outcomes of runs that followed this plan yet", highlight=False)
        return
    runs = evaluation.get("runs", 0)
    console.print(
        f"evaluation over {runs} run{'s' if runs != 1 else ''}: "
        f"{evaluation.get('ran', 0):,} tests ran, {evaluation.get('failures', 0):,} failed",
        highlight=False,
    )
    if evaluation.get("expanded"):
        console.print(
            f"expanded: {evaluation.get('watched_failures', 0):,} tests that had passed failed, "
            f"and the {evaluation.get('ran_dropped', 0):,} tests the plan dropped ran too",
            highlight=False,
        )
    table = Table("measure", "value")
    for label, key in (
        ("APFD", "apfd"),
        ("APFDc", "apfdc"),
        ("first failure at", "first_failure"),
        ("failures caught (selected)", "failures_caught"),
        ("failures in the exploration sample", "failures_in_exploration"),
        ("exploration tests that ran", "ran_exploration"),
        ("failures among dropped tests that ran", "failures_dropped_but_ran"),
        ("selected tests that did not run", "selected_not_run"),
        ("estimated failures missed", "estimated_missed_failures"),
        ("estimated miss rate", "estimated_miss_rate"),
    ):
        table.add_row(label, _figure(evaluation.get(key)))
    console.print(table)
