"""Tasks on plans."""

from __future__ import annotations

import logging

from scheduler.config import get_settings
from scheduler.queue import PLANS_SCORE
from scheduler.services import scoring
from workers.app import celery_app
from workers.common import database_of

log = logging.getLogger(__name__)


@celery_app.task(name=PLANS_SCORE, acks_late=True)
def score(commit_id: int) -> int | None:
    """Score every active test of the commit's repository (idempotent: an
    existing plan of the active model is kept). Returns the plan id."""
    with database_of(get_settings()).session() as session:
        plan = scoring.score_commit(session, commit_id)
        return plan.id if plan is not None else None
