"""Tasks on test runs."""

from __future__ import annotations

import logging
from datetime import timedelta

from scheduler.config import get_settings
from scheduler.db import database_for
from scheduler.queue import RUNS_INGEST, RUNS_SWEEP, send_now
from scheduler.services import runs
from workers.app import celery_app

log = logging.getLogger(__name__)


@celery_app.task(name=RUNS_INGEST, acks_late=True)
def ingest(run_id: int) -> str | None:
    """Fold a stored report into the history (idempotent)."""
    settings = get_settings()
    database = database_for(settings.database_url)
    try:
        with database.session() as session:
            status = runs.ingest_run(session, run_id)
    except Exception as error:
        # Left pending with the reason: the sweeper tries again later.
        log.exception("run %s failed", run_id)
        with database.session() as session:
            runs.record_run_error(
                session,
                run_id,
                error=f"{type(error).__name__}: {error}",
                max_attempts=settings.sweep_max_attempts,
            )
        return None
    return status.value if status else None


@celery_app.task(name=RUNS_SWEEP, acks_late=True)
def sweep() -> int:
    """Queue again the reports that were stored but never ingested."""
    settings = get_settings()
    with database_for(settings.database_url).session() as session:
        ids = runs.claim_pending_runs(
            session,
            older_than=timedelta(seconds=settings.sweep_min_age_seconds),
            max_attempts=settings.sweep_max_attempts,
        )
    for run_id in ids:
        send_now(celery_app, RUNS_INGEST, run_id)
    if ids:
        log.info("sweeper queued %d pending runs again", len(ids))
    return len(ids)
