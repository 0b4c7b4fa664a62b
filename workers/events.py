"""Tasks on CI events."""

from __future__ import annotations

from celery import Task

from scheduler import metrics
from scheduler.config import get_settings
from scheduler.models import EventStatus
from scheduler.queue import EVENTS_PROCESS, EVENTS_SWEEP, PLANS_SCORE, send_now
from scheduler.services import events
from workers.app import celery_app
from workers.common import database_of, requeue_stale, run_recording_errors


@celery_app.task(name=EVENTS_PROCESS, acks_late=True)
def process(event_id: int) -> str | None:
    """Turn a stored event into commits and changed files (idempotent)."""
    status, failed = run_recording_errors(
        lambda session: events.process_event(session, event_id),
        lambda session, error, attempts: events.record_event_error(
            session, event_id, error=error, max_attempts=attempts
        ),
        what=f"event {event_id}",
    )
    metrics.EVENTS_PROCESSED.labels(
        result="error" if failed else (status.value if status else "missing")
    ).inc()
    if status is EventStatus.HANDLED:
        with database_of(get_settings()).session() as session:
            head = events.pushed_head(session, event_id)
        if head is not None:
            send_now(celery_app, PLANS_SCORE, head)
    return status.value if status else None


@celery_app.task(name=EVENTS_SWEEP, acks_late=True, bind=True)
def sweep(self: Task[[], int]) -> int:
    """Queue again the events that were stored but never handled."""
    count = requeue_stale(
        lambda session, before, attempts: events.claim_unhandled_events(
            session, queued_before=before, max_attempts=attempts
        ),
        EVENTS_PROCESS,
        request=self.request,
    )
    metrics.EVENTS_REQUEUED.inc(count)
    return count
