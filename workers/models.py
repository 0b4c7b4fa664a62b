"""Tasks on models: periodic retraining."""

from __future__ import annotations

import logging

from scheduler.config import get_settings
from scheduler.queue import MODELS_TRAIN, MODELS_TRAIN_DUE, send_now
from scheduler.services import training
from workers.app import celery_app
from workers.common import database_of

log = logging.getLogger(__name__)


@celery_app.task(name=MODELS_TRAIN, acks_late=True)
def train(repository_id: int) -> int | None:
    """Train the repository's model (one at a time per repository: a second
    task finds the lock taken and returns). Returns the new version."""
    with database_of(get_settings()).session() as session:
        try:
            outcome = training.train_repository(session, repository_id=repository_id)
        except training.TrainingError as error:
            log.info("repository %s not trained: %s", repository_id, error)
            return None
        if outcome is None:
            log.info("repository %s is being trained already", repository_id)
            return None
        return outcome.model.version


@celery_app.task(name=MODELS_TRAIN_DUE, acks_late=True)
def train_due() -> list[int]:
    """Queue a training for every repository with enough new outcomes."""
    settings = get_settings()
    with database_of(settings).session() as session:
        due = training.repositories_due(
            session,
            every_runs=settings.train_every_runs,
            every_hours=settings.train_every_hours,
        )
    for repository_id in due:
        send_now(celery_app, MODELS_TRAIN, repository_id)
    return due
