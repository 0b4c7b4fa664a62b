"""The Celery app the worker and beat processes run: `celery -A workers.app`.

It is configured from the environment (RISKRANK_*) when the process starts,
and has the worker import the task modules so every task is registered."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import setup_logging, worker_process_init

from scheduler import db
from scheduler.config import get_settings
from scheduler.logs import configure_logging
from scheduler.queue import create_celery

celery_app = create_celery(get_settings())
# The task modules, imported by the worker as it starts (they import this
# module for `celery_app`, so they cannot be imported here at the top).
celery_app.conf.imports = (
    "workers.events",
    "workers.maintenance",
    "workers.models",
    "workers.plans",
    "workers.runs",
)


@setup_logging.connect
def _setup_logging(**_kwargs: Any) -> None:
    configure_logging(get_settings().log_level)


@worker_process_init.connect
def _fresh_connections(**_kwargs: Any) -> None:
    # A forked child must not share the parent's pooled connections.
    db.dispose_all()
    logging.getLogger(__name__).debug("worker process ready")
