"""riskrank db: the schema, and pruning what is past retention."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated

import typer

from scheduler.cli.common import (
    JsonFlag,
    console,
    existing_database,
    fail,
    make_database_directory,
    migrated_database,
    progress,
    settings,
    sqlite_file,
    unavailable,
)

app = typer.Typer(
    help="Create and upgrade the database schema; prune what is past retention.",
    no_args_is_help=True,
)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Alembic revision to reach.")) -> None:
    """Run the migrations up to REVISION (all of them by default), creating
    the database if it is a SQLite file not made yet."""
    from scheduler import migrate

    config = settings()
    make_database_directory(config)
    try:  # a database that does not answer is not a failed migration
        migrate.current(config.database_url)
    except Exception as error:
        unavailable(config.database_url, error)
    try:
        migrate.upgrade(config.database_url, revision)
    except Exception as error:
        fail(f"migration failed: {error}")
    path = sqlite_file(config.database_url)
    console.print(
        f"database at revision {migrate.current(config.database_url)}"
        + (f" in {path}" if path else ""),
        highlight=False,
    )


@app.command()
def current(as_json: JsonFlag = False) -> None:
    """Print the revision the database is at, and the newest one."""
    from scheduler import migrate

    config = settings()
    existing_database(config)
    try:
        revision = migrate.current(config.database_url)
    except Exception as error:
        unavailable(config.database_url, error)
    if as_json:
        typer.echo(json.dumps({"current": revision, "head": migrate.head()}))
        return
    console.print(f"current: {revision or 'none'}")
    console.print(f"head:    {migrate.head()}")


@app.command()
def prune(
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than",
            metavar="DAYS",
            min=0.0,
            help="Retention in days (default: RISKRANK_RETENTION_DAYS, 90).",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, remove nothing.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Remove plans, handled CI events and raw reports of ingested runs older
    than the retention (the worker's beat does it every few hours)."""
    from rich.markup import escape
    from rich.progress import SpinnerColumn, TextColumn

    from scheduler.models.base import utcnow
    from scheduler.services import retention

    config = settings()
    days = config.retention_days if older_than is None else older_than
    if days <= 0:
        fail("a retention of 0 days keeps everything: nothing to prune")
    database = migrated_database(config)
    now = utcnow()
    try:
        if dry_run:
            with database.session() as session:
                pruned = retention.count(session, cutoff=now - timedelta(days=days))
        else:
            with progress(
                SpinnerColumn(),
                TextColumn("[bold]pruning[/] {task.description}"),
                label="pruning",
            ) as bar:
                task = bar.add_task("…", total=None)

                def step(what: str, done: int) -> None:
                    bar.update(task, description=f"{escape(what)}: {done:,} so far")

                pruned = retention.prune(
                    database, older_than=timedelta(days=days), now=now, progress=step
                )
    finally:
        database.dispose()
    if as_json:
        typer.echo(json.dumps(pruned.as_dict() | {"dry_run": dry_run}))
        return
    verb = "would remove" if dry_run else "removed"
    console.print(
        f"{verb} {pruned.plans} plans (with their items), {pruned.events} CI events and "
        f"{pruned.reports} raw reports from before {pruned.cutoff:%Y-%m-%d %H:%M} UTC",
        highlight=False,
    )
