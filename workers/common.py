"""What the tasks share: one unit of work with its failure recorded, and
the sweep that queues stale rows again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from scheduler.config import Settings, get_settings
from scheduler.db import Database, database_for
from scheduler.models.base import utcnow
from scheduler.queue import SENT_AT_HEADER, send_now
from workers.app import celery_app

log = logging.getLogger(__name__)

S = TypeVar("S")


def run_recording_errors(
    work: Callable[[Session], S | None],
    record: Callable[[Session, str, int], S | None],
    *,
    what: str,
) -> tuple[S | None, bool]:
    """Run `work` in a transaction; if it raises, roll it back and let
    `record(session, error, max_attempts)` note why in a new one (the row
    stays pending for the sweeper until its attempts are spent). Returns the
    status and whether it failed."""
    settings = get_settings()
    database = database_of(settings)
    try:
        with database.session() as session:
            return work(session), False
    except Exception as error:
        log.exception("%s failed", what)
        with database.session() as session:
            return record(
                session, f"{type(error).__name__}: {error}", settings.sweep_max_attempts
            ), True


def database_of(settings: Settings) -> Database:
    """This process's database, with the workers' timeouts."""
    return database_for(settings.database_url, settings.database_timeouts())


def queued_before(settings: Settings, request: Any) -> datetime:
    """Rows last queued before this have no message waiting for them
    (scheduler.services.retry explains why): the publication time of the
    sweep's own message, less sweep_min_age_seconds as a margin. A sweep
    called without that header (directly, or sent by an older beat) falls
    back to sweep_visibility_seconds ago."""
    sent_at = getattr(request, SENT_AT_HEADER, None) if request is not None else None
    now = utcnow()
    if isinstance(sent_at, int | float) and not isinstance(sent_at, bool):
        published = min(datetime.fromtimestamp(sent_at, UTC), now)
        return published - timedelta(seconds=settings.sweep_min_age_seconds)
    return now - timedelta(seconds=settings.sweep_visibility_seconds)


def requeue_stale(
    claim: Callable[[Session, datetime, int], list[int]], task: str, *, request: Any
) -> int:
    """Queue `task(id)` again for every row `claim` finds lost; `request`
    is the sweep task's own (its message's publication time)."""
    settings = get_settings()
    with database_of(settings).session() as session:
        ids = claim(session, queued_before(settings, request), settings.sweep_max_attempts)
    for row_id in ids:
        send_now(celery_app, task, row_id)
    if ids:
        log.info("sweeper queued %d %s tasks again", len(ids), task)
    return len(ids)
