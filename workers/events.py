"""Tasks on CI events."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task
from celery.exceptions import Retry

from scheduler import metrics
from scheduler.config import get_settings
from scheduler.ingest.artifacts import ZipLimits
from scheduler.ingest.errors import IngestError
from scheduler.models import EventStatus
from scheduler.models.base import utcnow
from scheduler.queue import EVENTS_PROCESS, EVENTS_SWEEP, PLANS_SCORE, send_now
from scheduler.services import changes, events, pulls
from workers.app import celery_app
from workers.common import database_of, requeue_stale, run_recording_errors

log = logging.getLogger(__name__)


def _pull(event_id: int, job: pulls.PullJob) -> tuple[EventStatus | None, bool]:
    """Bring a run's reports from the provider with nothing locked, then
    store them in a transaction of their own (scheduler.services.pulls)."""
    settings = get_settings()
    try:
        reports = pulls.fetch_reports(
            job,
            http=settings.provider_http(),
            limits=ZipLimits(
                max_files=settings.pull_max_files,
                max_total_bytes=settings.pull_max_unzipped_bytes,
            ),
        )
    except Exception as error:
        failure = (
            error
            if isinstance(error, pulls.PullFailed)
            else pulls.PullFailed(f"{type(error).__name__}: {error}", retryable=True)
        )
        if failure is not error:
            # Not foreseen: counted as an attempt, the trace in the log.
            log.exception("event %s: pull failed", event_id)
        with database_of(settings).session() as session:
            if failure.retryable:
                status = events.record_event_error(
                    session,
                    event_id,
                    error=f"pull: {failure.message}",
                    max_attempts=settings.sweep_max_attempts,
                    not_before=utcnow() + timedelta(seconds=failure.retry_after)
                    if failure.retry_after
                    else None,
                )
            else:
                status = pulls.fail_event(session, event_id, error=f"pull: {failure.message}")
        result = "retry" if status is EventStatus.PENDING else "failed"
        metrics.RESULTS_PULLED.labels(provider=job.access.provider.value, result=result).inc()
        return status, True
    # Best-effort, once the reports are in hand: never fails the pull.
    jobs = pulls.fetch_jobs(job, http=settings.provider_http())
    status, failed = run_recording_errors(
        lambda session: pulls.store_reports(session, celery_app, job, reports, jobs),
        lambda session, error, attempts: events.record_event_error(
            session, event_id, error=error, max_attempts=attempts
        ),
        what=f"event {event_id}",
    )
    if not failed:
        provider = job.access.provider.value
        metrics.RESULTS_PULLED.labels(provider=provider, result="handled").inc()
        metrics.REPORTS_PULLED.labels(provider=provider).inc(len(reports))
    return status, failed


def _pull_job(event_id: int) -> pulls.PullJob | None:
    """The pull the event asks for, if it is one; a payload no pull can be
    made from fails the event (it is kept, with the reason)."""
    with database_of(get_settings()).session() as session:
        try:
            return pulls.pull_job(session, event_id)
        except IngestError as error:
            session.rollback()
            pulls.fail_event(session, event_id, error=f"malformed payload: {error.message}")
            return None


def _changes(
    event_id: int,
) -> tuple[changes.Fetched | None, str | None, str | None, float | None]:
    """What the provider's API says the event changed, when its payload
    does not say it all and the repository has a token; asked with nothing
    locked. Returns (fetched, note, reason, wait). A provider failing in a
    way worth another try (after the client's own retries) leaves the event
    pending with the error, to be asked again in `wait` seconds; one that
    refuses, or once the attempts are spent, leaves it to be handled with
    what its payload says, `note` says why (fail open) and `reason` what the
    provider answered (for the head's plans)."""
    settings = get_settings()
    with database_of(settings).session() as session:
        job = changes.change_job(session, event_id)
    if job is None:
        return None, None, None, None
    provider = job.access.provider.value
    try:
        fetched = changes.fetch(job, http=settings.provider_http())
    except changes.FetchFailed as error:
        wait = changes.next_try(
            error,
            attempts=job.attempts,
            # A failed attempt counts as one of the sweeper's: the last one
            # is left for handling the event.
            max_attempts=min(settings.changes_max_attempts, settings.sweep_max_attempts - 1),
            first_wait=settings.changes_retry_seconds,
            max_wait=settings.changes_max_retry_seconds,
        )
        if wait is not None and _wait_for_the_provider(event_id, error.message, wait):
            log.warning(
                "event %s: changed files not fetched, asking again in %.0f s: %s",
                event_id,
                wait,
                error.message,
            )
            metrics.CHANGES_FETCHED.labels(provider=provider, result="retry").inc()
            return None, None, None, wait
        log.warning("event %s: changed files not fetched: %s", event_id, error.message)
        metrics.CHANGES_FETCHED.labels(provider=provider, result="failed").inc()
        if error.retryable:
            note = (
                f"changed files unknown after {job.attempts + 1} attempts, handled with the "
                f"payload's: {error.message}"
            )
        else:
            note = f"changed files not fetched, handled with the payload's: {error.message}"
        return None, note, error.message, None
    except Exception as error:
        # Not foreseen: the trace in the log, and the event still handled.
        log.exception("event %s: fetching changed files failed", event_id)
        metrics.CHANGES_FETCHED.labels(provider=provider, result="failed").inc()
        reason = f"{type(error).__name__}: {error}"
        return None, f"changed files not fetched: {reason}", reason, None
    metrics.CHANGES_FETCHED.labels(provider=provider, result="fetched").inc()
    return fetched, None, None, None


def _wait_for_the_provider(event_id: int, message: str, wait: float) -> bool:
    """Record the failed attempt on the pending event, which the sweeper
    then leaves alone for `wait` seconds; False if it is no longer pending."""
    with database_of(get_settings()).session() as session:
        status = events.record_event_error(
            session,
            event_id,
            error=f"changed files not fetched, asking again in {wait:.0f} s: {message}",
            max_attempts=get_settings().sweep_max_attempts,
            not_before=utcnow() + timedelta(seconds=wait),
        )
    return status is EventStatus.PENDING


def _ask_again(task: Task[[int], str | None], event_id: int, wait: float) -> None:
    """Queue the event again in `wait` seconds (Celery's retry: a message
    with a countdown). If that message cannot be sent, or is lost, the
    sweeper queues the event once the wait is over: it stays pending."""
    try:
        task.retry(countdown=wait)
    except Retry:
        raise
    except Exception as error:
        log.warning("event %s: could not queue the retry, left to the sweeper: %s", event_id, error)


# max_retries=None: the event's attempts bound the retries (changes.next_try),
# also across the sweeper's queuing, which starts Celery's count afresh.
@celery_app.task(name=EVENTS_PROCESS, acks_late=True, bind=True, max_retries=None)
def process(self: Task[[int], str | None], event_id: int) -> str | None:
    """Turn a stored event into commits and changed files, or pull the
    results of a finished CI run (idempotent)."""
    job = _pull_job(event_id)
    if job is not None:
        status, failed = _pull(event_id, job)
    else:
        fetched, note, reason, wait = _changes(event_id)
        if wait is not None:
            _ask_again(self, event_id, wait)
            return EventStatus.PENDING.value
        status, failed = run_recording_errors(
            lambda session: events.process_event(
                session, event_id, fetched=fetched, note=note, reason=reason
            ),
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
