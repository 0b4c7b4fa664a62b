"""What the commands share: settings, the database, the arguments every
command spells the same way, the exit codes, and how errors look.

Every command module imports this at start-up, so it stays light: the
settings (pydantic), Alembic and SQLAlchemy are imported inside the functions
that use them, and `riskrank --help` loads none of them.

Exit codes, the same for every command:

- 0 (OK): done.
- 1 (FAILED): refused or not found: an unknown repository, event, model or
  token, a name that is ambiguous, a training already running, a file that
  cannot be read.
- 2 (USAGE): a bad option or argument (an unknown choice, a malformed
  commit id, a missing argument).
- 3 (RUN_ALL): `riskrank plan` only: riskrank cannot name the tests, run
  the whole suite.
- 4 (UNAVAILABLE): a service cannot be reached: the database (any command)
  or the broker (`status`, `events replay`)."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from scheduler.providers import Provider

if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn

    from scheduler.config import Settings
    from scheduler.db import Database

console = Console()
err_console = Console(stderr=True)

OK = 0
FAILED = 1
USAGE = 2
RUN_ALL = 3
UNAVAILABLE = 4

EXIT_CODES = {
    OK: "done",
    FAILED: "refused or not found (an unknown repository, event, model or token)",
    USAGE: "a bad option or argument",
    RUN_ALL: "`plan` only: run the whole suite, riskrank cannot name the tests",
    UNAVAILABLE: "the database or the broker cannot be reached",
}

# The arguments and options every command spells the same way.
RepoArgument = Annotated[
    str,
    typer.Argument(
        metavar="OWNER/NAME",
        help="The repository; for GitLab its path with every group: GROUP/SUBGROUP/NAME.",
        show_default=False,
    ),
]
ProviderOption = Annotated[
    Provider | None,
    typer.Option(help="Where the repository lives, if the name is registered for several."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text, for scripts.")]


# Closed sets of values, offered as choices. Spelt here, not imported from
# the modules that use them (planning loads numpy): tests/test_cli_admin.py
# checks that they match.
class Mode(enum.StrEnum):
    """scheduler.planning.policy.MODES."""

    ORDER = "order"
    TIME = "time"
    FRACTION = "fraction"
    CONFIDENCE = "confidence"


class By(enum.StrEnum):
    """scheduler.planning.policy.BY."""

    TESTS = "tests"
    DURATION = "duration"


class HistoryFormat(enum.StrEnum):
    """The history files `import` and `backtest` read (scheduler.ingest.history)."""

    AUTO = "auto"
    JSONL = "jsonl"
    RETECS = "retecs"


class Scope(enum.StrEnum):
    """scheduler.services.tokens.Scope."""

    RESULTS_WRITE = "results:write"
    PLANS_READ = "plans:read"


class Setting(enum.StrEnum):
    """The keys of a repository's plan policy (scheduler.services.plans.SETTING_TYPES)."""

    MODE = "mode"
    BUDGET = "budget"
    BY = "by"
    EXPLORATION_RATE = "exploration_rate"
    RECENT_FAILURES = "recent_failures"
    FULL_RUN_EVERY = "full_run_every"
    EXPAND_AFTER = "expand_after"
    MUST_RUN = "must_run"
    FULL_RUN_PATHS = "full_run_paths"
    EXTRA_FULL_RUN_PATHS = "extra_full_run_paths"
    OVERHEAD = "overhead"
    MISS_CEILING = "miss_ceiling"
    CALIBRATION_CEILING = "calibration_ceiling"


def choices(kind: type[enum.StrEnum]) -> str:
    """The metavar of a choice that Typer cannot make an Enum of (an option
    that takes a comma-separated list, or KEY=VALUE), spelt as Typer spells
    an Enum's, so that --help lists the values the same way."""
    return "<" + "|".join(kind) + ">"


def _not_one_of(value: str, kind: type[enum.StrEnum]) -> typer.BadParameter:
    # Worded as Typer words an Enum option's wrong value.
    known = ", ".join(repr(each.value) for each in kind)
    return typer.BadParameter(f"{value!r} is not one of {known}.")


def scope_list(text: str) -> str:
    """`--scope`: scopes, comma-separated; an unknown one is a usage error
    (exit 2), like a wrong value of any other choice."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise typer.BadParameter("name at least one scope")
    for part in parts:
        if part not in set(Scope):
            raise _not_one_of(part, Scope)
    return ",".join(parts)


def setting_assignment(text: str) -> str:
    """`--set KEY=VALUE`: a KEY that is no setting is a usage error (exit 2);
    whether the VALUE suits it is the settings service's to say."""
    key, equals, _ = text.partition("=")
    if not equals or not key.strip():
        raise typer.BadParameter(f"{text!r} is not KEY=VALUE")
    if key.strip() not in set(Setting):
        raise typer.BadParameter(
            f"unknown setting {key.strip()!r}; the settings are {', '.join(Setting)}"
        )
    return text


def progress(*columns: str | ProgressColumn, label: str, unit: str = "") -> Progress:
    """The progress of long work (training, a backtest, an import, pruning),
    with the time it has taken, on standard error, so that standard output
    stays the command's result (--json, a pipe). On a terminal a bar of
    `columns`; without one (a CI job, a pipe, a journal) no drawing, not even
    the bar's last state, but a plain line now and then: `LABEL: 400/2136
    UNIT (19%), 1 min 12 s`, once past another tenth of the work and at
    least 30 s (RISKRANK_PROGRESS_SECONDS) after the previous line; for work
    of unknown size (no total), `LABEL: DESCRIPTION, 12 s` at most that
    often (scheduler.cli.progress_lines)."""
    from rich.progress import Progress, TimeElapsedColumn

    if err_console.is_terminal and not err_console.is_dumb_terminal:
        return Progress(*columns, TimeElapsedColumn(), console=err_console)
    from scheduler.cli.progress_lines import EVERY_SECONDS, LoggedProgress

    every = os.environ.get("RISKRANK_PROGRESS_SECONDS", "").strip()
    try:
        seconds = float(every) if every else EVERY_SECONDS
    except ValueError:
        fail(f"RISKRANK_PROGRESS_SECONDS must be a number of seconds, not {every!r}")
    if not seconds >= 0:
        fail(f"RISKRANK_PROGRESS_SECONDS must be 0 or more, not {every!r}")
    return LoggedProgress(*columns, label=label, unit=unit, every=seconds, console=err_console)


def fail(message: str, code: int = FAILED) -> NoReturn:
    # The message may hold paths with brackets: never read it as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings() -> Settings:
    from scheduler.config import get_settings

    try:
        return get_settings()
    except ValueError as error:
        fail(f"invalid settings: {error}")


def sqlite_file(database_url: str) -> Path | None:
    """The file a SQLite URL names, made absolute (None: not SQLite, or not a
    plain file: in memory, or a `file:` URI)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    name = url.database
    if url.get_backend_name() != "sqlite" or not name or name == ":memory:":
        return None
    if name.startswith("file:"):
        return None
    return Path(name).expanduser().absolute()


def where_from(config: Settings) -> str:
    """Which setting chose the database, for messages."""
    from scheduler.config import embedded_database_url

    if config.database_url == embedded_database_url(config.data_dir):
        return f"the data directory, RISKRANK_DATA_DIR, is {config.data_dir}"
    return "set by RISKRANK_DATABASE_URL"


def make_database_directory(config: Settings) -> None:
    """Create the directory of a SQLite database (SQLite makes the file, not
    its directory): only `up` and `db upgrade`, which create the database."""
    path = sqlite_file(config.database_url)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"cannot create {path.parent} for the database: {error.strerror or error}")


def existing_database(config: Settings) -> None:
    """Refuse, saying where it looked, if the SQLite database file is missing:
    connecting would create an empty one, and the next command would look at
    that instead of telling the user they are in the wrong place."""
    path = sqlite_file(config.database_url)
    if path is not None and not path.is_file():
        fail(
            f"no riskrank database at {path} ({where_from(config)}): "
            "create it with `riskrank up` or `riskrank db upgrade`, "
            "or set RISKRANK_DATA_DIR (or RISKRANK_DATABASE_URL) to where it is"
        )


def unavailable(url: str, error: BaseException) -> NoReturn:
    """Exit UNAVAILABLE: the database at `url` did not answer."""
    from scheduler.db import shown_url

    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    reason = lines[0] if lines else type(error).__name__
    fail(f"cannot reach the database {shown_url(url)}: {reason}", UNAVAILABLE)


def migrated_database(config: Settings) -> Database:
    """The configured database, refusing a missing one (never creating it) and
    an out-of-date schema."""
    from scheduler import migrate
    from scheduler.db import database_for

    existing_database(config)
    try:
        current = migrate.current(config.database_url)
    except Exception as error:
        unavailable(config.database_url, error)
    head = migrate.head()
    if current != head:
        fail(
            f"the database is at revision {current or 'none'}, riskrank needs {head}: "
            "run `riskrank db upgrade`"
        )
    return database_for(config.database_url, config.database_timeouts())
