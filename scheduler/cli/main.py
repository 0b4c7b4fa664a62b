"""The `riskrank` command tree.

Conventions every command keeps (docs/admin-cli.md): a repository is the
argument OWNER/NAME, with --provider when the name is registered for
several; a command that reads prints text for people and, with --json, JSON
for scripts; closed sets of values are choices; long work shows progress;
the exit codes are scheduler.cli.common's."""

from __future__ import annotations

import inspect
import re
from typing import Any

import typer
from typer.core import TyperGroup

from scheduler import __version__
from scheduler.cli import (
    backtest,
    db,
    events,
    history,
    models,
    plan,
    plan_log,
    processes,
    repo,
    status,
    testcases,
    token,
)
from scheduler.cli.common import EXIT_CODES, UNAVAILABLE, unavailable

EPILOG = "Exit codes:\n\n" + "\n\n".join(
    f"{code}  {meaning}" for code, meaning in EXIT_CODES.items()
)


# `plan` and `plans` were one letter apart and did different things.
FORMER_NAMES = {"plans": "plan-log"}


class _Tree(TyperGroup):
    """The command tree, which still understands the former names of its
    commands without listing them (in the help or the reference)."""

    # Typed loosely: Typer carries its own copy of Click's classes.
    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return super().get_command(ctx, FORMER_NAMES.get(cmd_name, cmd_name))


app = typer.Typer(
    name="riskrank",
    cls=_Tree,
    help="Run the tests most likely to fail first. Settings come from RISKRANK_* variables.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
processes.register(app)
status.register(app)
history.register(app)
backtest.register(app)
app.command()(models.train)
app.command()(plan.plan)
app.add_typer(plan_log.app, name="plan-log")
app.add_typer(models.app, name="models")
app.add_typer(events.app, name="events")
app.add_typer(testcases.app, name="tests")
app.add_typer(repo.app, name="repo")
app.add_typer(token.app, name="token")
app.add_typer(db.app, name="db")


def unwrap(text: str) -> str:
    """A docstring as help: its paragraphs kept, the line breaks inside each
    joined (Typer prints them as they are, in the middle of sentences)."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(text))
    return "\n\n".join(" ".join(part.split()) for part in paragraphs)


def _tidy_help(tree: typer.Typer) -> None:
    for command in tree.registered_commands:
        doc = command.help or inspect.getdoc(command.callback) or ""
        command.help = unwrap(doc)
        # The list of commands shows the first paragraph only.
        command.short_help = command.short_help or command.help.split("\n\n", 1)[0]
    for group in tree.registered_groups:
        if group.typer_instance is not None:
            _tidy_help(group.typer_instance)


_tidy_help(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"riskrank {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    pass


def main() -> None:
    try:
        app()
    except Exception as error:
        # A database that goes away after the command's first check: the
        # same message and exit code as one that was never there.
        from sqlalchemy.exc import InterfaceError, OperationalError

        if not isinstance(error, OperationalError | InterfaceError):
            raise
        from scheduler.config import get_settings

        try:
            unavailable(get_settings().database_url, error)
        except typer.Exit:
            raise SystemExit(UNAVAILABLE) from None
