"""The Celery app the worker and beat processes run: `celery -A workers.app`.

It is configured from the environment (RISKRANK_*) when the process starts,
and has the worker import the task modules so every task is registered."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_ready,
)

from scheduler import db, logs, metrics
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
    "workers.statuses",
)


@setup_logging.connect
def _setup_logging(**_kwargs: Any) -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    # Celery's own "received" and "succeeded in" lines would be a second and
    # third line per task: scheduler.logs.task_line is the one. Its errors
    # (a task that raised, with the traceback) still show.
    for name in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(name).setLevel(logging.WARNING)


@worker_process_init.connect
def _fresh_connections(**_kwargs: Any) -> None:
    # A forked child must not share the parent's pooled connections.
    db.dispose_all()
    logging.getLogger(__name__).debug("worker process ready")


@worker_ready.connect
def _serve_metrics(**_kwargs: Any) -> None:
    # In the worker's main process, once its pool runs: the pool processes
    # write to the directory this serves (scheduler.metrics says why a port).
    port = get_settings().worker_metrics_port
    if not port:
        return
    log = logging.getLogger(__name__)
    try:
        metrics.serve_worker_metrics(port)
    except OSError as error:
        # The work matters more than its figures: go on without them.
        log.error("cannot serve the worker's metrics on port %d: %s", port, error)
        return
    log.info("worker metrics on port %d", port)


# When each task began, by task id (per pool process: a task runs in one).
_STARTED: dict[str, float] = {}


@task_prerun.connect
def _task_started(task_id: str | None = None, **_kwargs: Any) -> None:
    if task_id is not None:
        _STARTED[task_id] = time.perf_counter()


@task_postrun.connect
def _task_ended(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_kwargs: Any
) -> None:
    started = _STARTED.pop(task_id, None) if task_id is not None else None
    if started is None or task is None:
        return
    seconds = time.perf_counter() - started
    outcome = (state or "unknown").lower()
    metrics.TASK_SECONDS.labels(task=task.name, outcome=outcome).observe(seconds)
    logs.task_line(task=task.name, task_id=task_id or "", outcome=outcome, seconds=seconds)
