"""What the commands share: settings, the database, and how errors look."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from scheduler import migrate
from scheduler.config import Settings, get_settings
from scheduler.db import Database, database_for

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    # The message may hold paths with brackets: never read it as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        return get_settings()
    except ValueError as error:
        fail(f"invalid settings: {error}")


def migrated_database(config: Settings) -> Database:
    """The configured database, refusing to work on an out-of-date schema."""
    try:
        current = migrate.current(config.database_url)
    except Exception as error:
        fail(f"cannot reach the database {config.database_url}: {error}")
    head = migrate.head()
    if current != head:
        fail(
            f"the database is at revision {current or 'none'}, riskrank needs {head}: "
            "run `riskrank db upgrade`"
        )
    return database_for(config.database_url)
