"""Tasks on CI events."""

from __future__ import annotations

import logging
from datetime import timedelta

from scheduler import metrics
from scheduler.config import get_settings
from scheduler.db import database_for
from scheduler.models import EventStatus
from scheduler.queue import EVENTS_PROCESS, EVENTS_SWEEP, send_now
from scheduler.services import events
from workers.app import celery_app

log = logging.getLogger(__name__)


@celery_app.task(name=EVENTS_PROCESS, acks_late=True)
def process(event_id: int) -> str | None:
    """Turn a stored event into commits and changed files (idempotent)."""
    settings = get_settings()
    database = database_for(settings.database_url)
    status: EventStatus | None
    try:
        with database.session() as session:
            status = events.process_event(session, event_id)
    except Exception as error:
        log.exception("event %s failed", event_id)
        with database.session() as session:
            status = events.record_event_error(
                session,
                event_id,
                error=f"{type(error).__name__}: {error}",
                max_attempts=settings.sweep_max_attempts,
            )
        metrics.EVENTS_PROCESSED.labels(result="failed").inc()
        return status.value if status else None
    if status is not None:
        metrics.EVENTS_PROCESSED.labels(result=status.value).inc()
    return status.value if status else None


@celery_app.task(name=EVENTS_SWEEP, acks_late=True)
def sweep() -> int:
    """Queue again the events that were stored but never handled."""
    settings = get_settings()
    with database_for(settings.database_url).session() as session:
        ids = events.claim_unhandled_events(
            session,
            older_than=timedelta(seconds=settings.sweep_min_age_seconds),
            max_attempts=settings.sweep_max_attempts,
        )
    for event_id in ids:
        send_now(celery_app, EVENTS_PROCESS, event_id)
    if ids:
        metrics.EVENTS_REQUEUED.inc(len(ids))
        log.info("sweeper queued %d unhandled events again", len(ids))
    return len(ids)
