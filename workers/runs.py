"""Tasks on test runs."""

from __future__ import annotations

from celery import Task

from scheduler.config import get_settings
from scheduler.models import RunStatus
from scheduler.queue import RUNS_INGEST, RUNS_SWEEP
from scheduler.services import runs, statuses
from workers.app import celery_app
from workers.common import database_of, requeue_stale, run_recording_errors


@celery_app.task(name=RUNS_INGEST, acks_late=True)
def ingest(run_id: int) -> str | None:
    """Fold a stored report into the history (idempotent), in steps that
    each commit: a large report never holds a lock for long, and a
    redelivery goes on where the killed worker stopped."""
    ingestion = runs.RunIngestion(run_id)
    while True:
        status, failed = run_recording_errors(
            ingestion.step,
            lambda session, error, attempts: runs.record_run_error(
                session, run_id, error=error, max_attempts=attempts
            ),
            what=f"run {run_id}",
        )
        if failed or status is not RunStatus.PENDING:
            if status is RunStatus.INGESTED:
                _queue_status(run_id)
            return status.value if status else None


def _queue_status(run_id: int) -> None:
    """The run's plan has a new evaluation: its commit status says it."""
    database = database_of(get_settings())
    with database.session() as session:
        plan_id = statuses.plan_of_run(session, run_id)
    if plan_id is not None:
        statuses.queue_for_plan(database, celery_app, plan_id)


@celery_app.task(name=RUNS_SWEEP, acks_late=True, bind=True)
def sweep(self: Task[[], int]) -> int:
    """Queue again the reports that were stored but never ingested."""
    return requeue_stale(
        lambda session, before, attempts: runs.claim_pending_runs(
            session, queued_before=before, max_attempts=attempts
        ),
        RUNS_INGEST,
        request=self.request,
    )
