"""What the tasks share: one unit of work with its failure recorded, and
the sweep that queues stale rows again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from sqlalchemy.orm import Session

from scheduler.config import get_settings
from scheduler.db import database_for
from scheduler.queue import send_now
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
    database = database_for(settings.database_url)
    try:
        with database.session() as session:
            return work(session), False
    except Exception as error:
        log.exception("%s failed", what)
        with database.session() as session:
            return record(
                session, f"{type(error).__name__}: {error}", settings.sweep_max_attempts
            ), True


def requeue_stale(claim: Callable[[Session, timedelta, int], list[int]], task: str) -> int:
    """Queue `task(id)` again for every row `claim` finds nobody took up."""
    settings = get_settings()
    with database_for(settings.database_url).session() as session:
        ids = claim(
            session, timedelta(seconds=settings.sweep_min_age_seconds), settings.sweep_max_attempts
        )
    for row_id in ids:
        send_now(celery_app, task, row_id)
    if ids:
        log.info("sweeper queued %d %s tasks again", len(ids), task)
    return len(ids)
