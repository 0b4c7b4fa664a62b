"""riskrank events: the CI events riskrank stored, and replaying one."""

from __future__ import annotations

import enum
import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from scheduler.cli.common import (
    UNAVAILABLE,
    JsonFlag,
    ProviderOption,
    console,
    fail,
    migrated_database,
    settings,
)

app = typer.Typer(help="List the stored CI events; replay one.", no_args_is_help=True)


class Status(enum.StrEnum):
    # scheduler.models.EventStatus, spelt here: the CLI's start-up does not
    # load the models.
    PENDING = "pending"
    HANDLED = "handled"
    IGNORED = "ignored"
    FAILED = "failed"


@app.command("list")
def list_(
    full_name: Annotated[
        str | None,
        typer.Argument(
            metavar="OWNER/NAME", help="Only this repository's events (default: every one)."
        ),
    ] = None,
    status: Annotated[
        list[Status] | None,
        typer.Option(help="Only events in this status; repeat for several."),
    ] = None,
    limit: Annotated[int, typer.Option(min=0, help="How many events, newest first.")] = 50,
    provider: ProviderOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List the stored CI events, newest first: what arrived, whether a
    worker handled it, and why it failed if it did."""
    from scheduler.models import EventStatus
    from scheduler.services import event_log, repos

    with migrated_database(settings()).session() as session:
        repository_id = None
        if full_name is not None:
            try:
                repository_id = repos.resolve_repository(
                    session, full_name=full_name, provider=provider
                ).id
            except repos.RepositoryError as error:
                fail(str(error))
        rows = event_log.list_events(
            session,
            repository_id=repository_id,
            statuses=[EventStatus(value.value) for value in status or []],
            limit=limit,
        )
    if as_json:
        typer.echo(json.dumps([row.as_json() for row in rows], indent=2))
        return
    table = Table("id", "repository", "event", "status", "attempts", "received (UTC)", "error")
    for row in rows:
        table.add_row(
            str(row.id),
            escape(row.repository or "-"),
            escape(f"{row.provider} {row.event}" + (f" ({row.action})" if row.action else "")),
            row.status,
            str(row.attempts),
            row.received_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(row.error or ""),
        )
    console.print(table)


@app.command()
def replay(
    event_id: Annotated[
        int, typer.Argument(metavar="ID", help="The event's id, from `riskrank events list`.")
    ],
) -> None:
    """Queue a stored event again: it goes back to pending, its attempts and
    error cleared, and a worker handles it as if it had just arrived.
    Handling is idempotent: replaying a handled event adds nothing twice.

    Exit status: 1 no such event; 4 the broker cannot be reached (the event
    stays pending and the sweeper queues it once the broker is back)."""
    from scheduler.db import shown_url
    from scheduler.queue import EVENTS_PROCESS, create_celery, send_now
    from scheduler.services import event_log

    config = settings()
    with migrated_database(config).session() as session:
        try:
            replayed = event_log.replay_event(session, event_id)
        except event_log.UnknownEvent as error:
            fail(str(error))
    # Sent once the event is pending in the database (the session committed).
    if not send_now(create_celery(config), EVENTS_PROCESS, replayed.id):
        fail(
            f"event {replayed.id} is pending again but the broker {shown_url(config.broker_url)} "
            "cannot be reached: the sweeper queues it once the broker is back",
            UNAVAILABLE,
        )
    console.print(
        f"event {replayed.id} queued again (it was {replayed.previous_status})", highlight=False
    )
