"""Tasks that keep the database in shape: pruning what is past retention."""

from __future__ import annotations

from datetime import timedelta

from scheduler.config import get_settings
from scheduler.queue import MAINTENANCE_PRUNE
from scheduler.services import retention
from workers.app import celery_app
from workers.common import database_of


@celery_app.task(name=MAINTENANCE_PRUNE, acks_late=True)
def prune() -> dict[str, object] | None:
    """Remove what is older than the retention (none with retention 0).
    Idempotent: a second run finds nothing left to remove."""
    settings = get_settings()
    if settings.retention_days <= 0:
        return None
    pruned = retention.prune(
        database_of(settings), older_than=timedelta(days=settings.retention_days)
    )
    return pruned.as_dict()
