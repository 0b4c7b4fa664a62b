"""riskrank import | export: CI histories in and out."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from scheduler.cli.common import (
    HistoryFormat,
    ProviderOption,
    RepoArgument,
    console,
    fail,
    migrated_database,
    progress,
    settings,
)
from scheduler.providers import Provider

if TYPE_CHECKING:
    from scheduler.ingest.history import HistoryReport


def read_reports(file: Path, fmt: str) -> list[HistoryReport]:
    """Every report of a history file, or the command fails saying why."""
    from scheduler.errors import ClientError
    from scheduler.ingest.history import read_history

    console.print(f"reading {file} …", markup=False)
    try:
        return list(read_history(file, fmt))
    except ClientError as error:
        fail(str(error))


def described(reports: list[HistoryReport]) -> str:
    """What the history holds, counted as `riskrank backtest` evaluates it."""
    from scheduler.risk import replay

    counts = replay.count_history(replay.builds_from_reports(reports))
    changes = [change for report in reports for change in report.changed_files]
    if changes:
        counted = sum(change.lines is not None for change in changes)
        with_hunks = sum(change.hunks is not None for change in changes)
        symbols = sum(hunk.symbol is not None for change in changes for hunk in change.hunks or ())
        files = (
            f"changed files: {len(changes):,}, with line counts: {counted:,}, "
            f"with hunks: {with_hunks:,} (hunks naming a symbol: {symbols:,})"
        )
    else:
        files = "changed files: none"
    return (
        f"the history: builds: {counts.builds:,}, tests that ran: {counts.tests:,}, "
        f"failing builds: {counts.failing_builds:,} (failures: {counts.failures:,}), "
        f"status changes: {counts.status_changes:,} (in builds: {counts.status_change_builds:,}); "
        f"{files}"
    )


def import_(
    full_name: RepoArgument,
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="History file (.gz allowed).")
    ],
    fmt: Annotated[
        HistoryFormat,
        typer.Option(
            "--format", help="The file's format: jsonl, retecs (RETECS/COLEMAN CSV) or auto."
        ),
    ] = HistoryFormat.AUTO,
    provider: ProviderOption = None,
    create: Annotated[
        bool, typer.Option(help="Register the repository if it is not yet (generic provider).")
    ] = False,
    batch: Annotated[int, typer.Option(min=1, help="Builds per transaction.")] = 100,
) -> None:
    """Import a CI history: each build goes through the same ingestion as live
    results. Builds imported before are skipped, so it can be run again."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

    from scheduler.services import history, repos

    database = migrated_database(settings())
    try:
        with database.session() as session:
            repos.resolve_repository(session, full_name=full_name, provider=provider)
    except repos.UnknownRepositoryName as error:
        if not create:
            fail(f"{error} (or pass --create to register it here)")
    except repos.RepositoryError as error:
        fail(str(error))
    # Read the whole file first: a file that cannot be read registers nothing.
    reports = read_reports(file, fmt.value)
    try:
        with database.session() as session:
            try:
                repository = repos.resolve_repository(
                    session, full_name=full_name, provider=provider
                )
            except repos.UnknownRepositoryName:
                repository = repos.add_repository(
                    session, provider=provider or Provider.GENERIC, full_name=full_name
                )
            repository_id = repository.id
    except repos.RepositoryError as error:
        fail(str(error))
    rows = sum(len(report.results) for report in reports)
    started = time.perf_counter()
    with progress(
        TextColumn("[bold]importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("reports · {task.fields[rate]:,.0f} rows/s"),
        label="import",
        unit="reports",
    ) as bar:
        task = bar.add_task("import", total=len(reports), rate=0.0)
        done_rows = 0

        def advance(report: HistoryReport) -> None:
            nonlocal done_rows
            done_rows += len(report.results)
            elapsed = max(time.perf_counter() - started, 1e-9)
            bar.update(task, advance=1, rate=done_rows / elapsed)

        tally = history.import_history(
            database, repository_id=repository_id, reports=reports, batch=batch, progress=advance
        )
    elapsed = time.perf_counter() - started
    console.print(
        f"imported {tally.reports} reports ({tally.executions:,} executions) into {full_name} "
        f"in {elapsed:.1f} s, {tally.executions / max(elapsed, 1e-9):,.0f} rows/s; "
        f"{tally.skipped} reports were already there ({rows:,} rows read)",
        highlight=False,
    )
    console.print(described(reports), highlight=False, markup=False)


def export(
    full_name: RepoArgument,
    file: Annotated[Path, typer.Argument(dir_okay=False, help="Where to write (.gz: gzipped).")],
    provider: ProviderOption = None,
) -> None:
    """Write the repository's ingested history as history JSONL (one line per
    report), which `riskrank import` reads back to the same statistics."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

    from scheduler.services import history, repos

    database = migrated_database(settings())
    with database.session() as session:
        try:
            repository = repos.resolve_repository(session, full_name=full_name, provider=provider)
        except repos.RepositoryError as error:
            fail(str(error))
        opener = gzip.open if file.suffix == ".gz" else open
        total = history.exported_runs(session, repository_id=repository.id)
        try:
            with (
                opener(file, "wt", encoding="utf-8") as stream,
                progress(
                    TextColumn("[bold]exporting"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("reports"),
                    label="export",
                    unit="reports",
                ) as bar,
            ):
                task = bar.add_task("export", total=total)

                def counted() -> Iterator[dict[str, Any]]:
                    for report in history.export_history(session, repository_id=repository.id):
                        yield report
                        bar.update(task, advance=1)

                count = history.write_jsonl(counted(), stream)
        except OSError as error:
            fail(f"cannot write {file}: {error.strerror or error}")
    console.print(f"wrote {count} reports to {file}")


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.command("export")(export)
