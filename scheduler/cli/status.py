"""riskrank status: is riskrank able to work, and what has it seen lately."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from scheduler.cli.common import FAILED, UNAVAILABLE, JsonFlag, console, fail, settings

if TYPE_CHECKING:
    from scheduler.config import Settings


@dataclass
class Check:
    """One service: reachable or not, and what was read from it."""

    url: str
    reachable: bool = False
    error: str | None = None
    details: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "reachable": self.reachable,
            "error": self.error,
            **(self.details or {}),
        }


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _database(config: Settings) -> tuple[Check, dict[str, Any] | None]:
    """The database's check, and what it holds (None when it cannot be read)."""
    from scheduler import migrate
    from scheduler.cli.common import sqlite_file, where_from
    from scheduler.db import database_for, shown_url
    from scheduler.services import overview

    check = Check(url=shown_url(config.database_url))
    path = sqlite_file(config.database_url)
    if path is not None and not path.is_file():
        check.error = f"no riskrank database at {path} ({where_from(config)})"
        return check, None
    try:
        current = migrate.current(config.database_url)
    except Exception as error:
        check.error = _first_line(error)
        return check, None
    check.reachable = True
    head = migrate.head()
    check.details = {"revision": current, "head": head}
    if current != head:
        return check, None
    database = database_for(config.database_url, config.database_timeouts())
    with database.session() as session:
        waiting = overview.waiting(session)
        repositories = overview.all_repositories(session)
    return check, {
        "waiting": {name: found.as_json() for name, found in waiting.items()},
        "repositories": [repository.as_json() for repository in repositories],
    }


def _broker(config: Settings) -> Check:
    """Whether the broker answers, and how many messages wait in riskrank's queue."""
    from scheduler.db import shown_url
    from scheduler.queue import QUEUE_NAME, create_celery

    check = Check(url=shown_url(config.broker_url))
    celery = create_celery(config)
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(
                max_retries=1,
                interval_start=0,
                interval_step=0,
                timeout=max(1, math.ceil(config.publish_timeout_seconds)),
            )
            check.reachable = True
            try:
                channel: Any = connection.default_channel  # kombu's Channel, typed loosely
                declared = channel.queue_declare(queue=QUEUE_NAME, passive=True)
                queued = int(declared.message_count)
            except Exception:
                # Redis says "no such queue" until the first message declared it.
                queued = 0
            check.details = {"queue": QUEUE_NAME, "queued": queued}
    except Exception as error:
        check.reachable = False
        check.error = _first_line(error)
    return check


def _when(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else "-"


def _figure(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"


def _print(database: Check, broker: Check, held: dict[str, Any] | None) -> None:
    services = Table("service", "state", "detail")
    for name, check in (("database", database), ("broker", broker)):
        if not check.reachable:
            services.add_row(name, "[red]unavailable[/]", escape(f"{check.url}: {check.error}"))
            continue
        details = check.details or {}
        if name == "database":
            behind = details["revision"] != details["head"]
            detail = f"{check.url}, revision {details['revision'] or 'none'}" + (
                f" (riskrank needs {details['head']}: run `riskrank db upgrade`)" if behind else ""
            )
            services.add_row(
                name, "[yellow]behind[/]" if behind else "[green]ok[/]", escape(detail)
            )
        else:
            services.add_row(
                name,
                "[green]ok[/]",
                escape(f"{check.url}, {details['queued']:,} messages in queue {details['queue']}"),
            )
    console.print(services)
    if held is None:
        return
    for kind, label in (("events", "CI events"), ("runs", "test reports")):
        waiting = held["waiting"][kind]
        oldest = (
            f", the oldest for {waiting['oldest_seconds']:,.0f} s"
            if waiting["oldest_seconds"] is not None
            else ""
        )
        console.print(
            f"{label}: {waiting['pending']:,} waiting for a worker{oldest}; "
            f"{waiting['failed']:,} given up",
            highlight=False,
        )
    table = Table(
        "repository",
        "last event (UTC)",
        "last results (UTC)",
        "active model",
        "APFD",
        "AUC",
        "last training (UTC)",
    )
    for row in held["repositories"]:
        event, results = row["last_event"], row["last_results"]
        model, trained = row["active_model"], row["last_training"]
        table.add_row(
            escape(row["repository"]),
            f"{_when(event['received_at'])} {event['event']} ({event['status']})" if event else "-",
            f"{_when(results['received_at'])} ({results['status']})" if results else "-",
            f"v{model['version']}" if model else "none (heuristic)",
            _figure(model["apfd"]) if model else "-",
            _figure(model["auc"]) if model else "-",
            f"{_when(trained['created_at'])} v{trained['version']} ({trained['status']})"
            if trained
            else "never",
        )
    console.print(table)


def status(as_json: JsonFlag = False) -> None:
    """Whether riskrank can work and what it saw last: the database and the
    broker reachable, the messages in the broker's queue, the CI events and
    test reports waiting for a worker; per repository, its last event, last
    results, active model and its quality, and last training.

    Exit status: 0 all is well; 1 the database's schema is behind; 4 the
    database or the broker cannot be reached."""
    config = settings()
    database, held = _database(config)
    broker = _broker(config)
    if as_json:
        document: dict[str, Any] = {
            "database": database.as_json(),
            "broker": broker.as_json(),
            "waiting": held["waiting"] if held else None,
            "repositories": held["repositories"] if held else None,
        }
        typer.echo(json.dumps(document, indent=2))
    else:
        _print(database, broker, held)
    # Said on stderr too with --json: stdout stays one JSON document.
    down = [
        f"cannot reach the {name} {check.url}: {check.error}"
        for name, check in (("database", database), ("broker", broker))
        if not check.reachable
    ]
    if down:
        fail("; ".join(down), UNAVAILABLE)
    if held is None:
        fail("the database's schema is behind: run `riskrank db upgrade`", FAILED)


def register(app: typer.Typer) -> None:
    app.command()(status)
