"""riskrank db: the schema."""

from __future__ import annotations

import typer

from scheduler import migrate
from scheduler.cli.common import console, fail, settings

app = typer.Typer(help="Create and upgrade the database schema.", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Alembic revision to reach.")) -> None:
    """Run the migrations up to REVISION (all of them by default)."""
    config = settings()
    try:
        migrate.upgrade(config.database_url, revision)
    except Exception as error:
        fail(f"migration failed: {error}")
    console.print(f"database at revision {migrate.current(config.database_url)}")


@app.command()
def current() -> None:
    """Print the revision the database is at, and the newest one."""
    config = settings()
    console.print(f"current: {migrate.current(config.database_url) or 'none'}")
    console.print(f"head:    {migrate.head()}")
