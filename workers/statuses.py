"""Tasks on commit statuses."""

from __future__ import annotations

import logging

from scheduler import metrics
from scheduler.config import get_settings
from scheduler.providers_api.http import ProviderApiError
from scheduler.queue import STATUSES_POST
from scheduler.services import statuses
from workers.app import celery_app
from workers.common import database_of

log = logging.getLogger(__name__)


@celery_app.task(name=STATUSES_POST, acks_late=True)
def post(plan_id: int) -> str | None:
    """Post the plan's commit status, with its outcome once it is known
    (idempotent: the provider keeps the newest status of the context)."""
    settings = get_settings()
    with database_of(settings).session() as session:
        job = statuses.status_job(session, plan_id)
    if job is None:
        return None
    provider = job.access.provider.value
    try:
        statuses.post(job, http=settings.provider_http())
    except ProviderApiError as error:
        log.warning("plan %s: commit status not posted: %s", plan_id, error.message)
        metrics.COMMIT_STATUSES.labels(provider=provider, result="failed").inc()
        return "failed"
    metrics.COMMIT_STATUSES.labels(provider=provider, result="posted").inc()
    return job.description
