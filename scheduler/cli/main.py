"""The `riskrank` command tree."""

from __future__ import annotations

import typer

from scheduler import __version__
from scheduler.cli import backtest, db, history, models, plan, plans, processes, repo, token

app = typer.Typer(
    name="riskrank",
    help="Run the tests most likely to fail first. Settings come from RISKRANK_* variables.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
processes.register(app)
history.register(app)
backtest.register(app)
app.command()(models.train)
app.command()(plan.plan)
app.add_typer(models.app, name="models")
app.add_typer(db.app, name="db")
app.add_typer(repo.app, name="repo")
app.add_typer(token.app, name="token")
app.add_typer(plans.app, name="plans")


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
    app()
