"""The Celery app, the task names, and enqueue-after-commit.

`scheduler` never imports `workers`: it sends tasks by name. A task is sent
only once the transaction that created its rows has committed, and a rollback
drops it, so a worker never looks for a row that is not there."""

from __future__ import annotations

import logging
import sqlite3
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import before_task_publish
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from scheduler import metrics
from scheduler.config import Settings

log = logging.getLogger(__name__)

QUEUE_NAME = "riskrank"

# Task names: `domain.action`.
EVENTS_PROCESS = "events.process"
EVENTS_SWEEP = "events.sweep"
RUNS_INGEST = "runs.ingest"
RUNS_SWEEP = "runs.sweep"
PLANS_SCORE = "plans.score"
MODELS_TRAIN = "models.train"
MODELS_TRAIN_DUE = "models.train_due"
MAINTENANCE_PRUNE = "maintenance.prune"
STATUSES_POST = "statuses.post"

# The api queues these two: their publish failures show as 0 until one fails
# (a dashboard's query finds the series before the first outage).
for _task in (EVENTS_PROCESS, RUNS_INGEST):
    metrics.TASKS_PUBLISH_FAILED.labels(task=_task)

_PENDING_KEY = "riskrank.pending_tasks"

# A header of the sweeps' messages: when they were published (seconds since
# the epoch). The sweep reads it as its own request's attribute: everything
# published before it has been delivered (scheduler.services.retry).
SENT_AT_HEADER = "riskrank_sent_at"
_STAMPED = frozenset({EVENTS_SWEEP, RUNS_SWEEP})


@before_task_publish.connect
def _stamp_sent_at(headers: dict[str, Any] | None = None, **_kwargs: Any) -> None:
    if headers is not None and headers.get("task") in _STAMPED:
        headers[SENT_AT_HEADER] = time.time()


def _is_embedded_broker(broker_url: str) -> bool:
    return broker_url.startswith(("sqla+sqlite", "sqlalchemy+sqlite"))


def prepare_embedded_broker(broker_url: str) -> None:
    """Put the SQLite broker file in WAL mode (it persists in the file), so the
    api, worker and beat processes can share it without locking each other out."""
    if not _is_embedded_broker(broker_url):
        return
    path = make_url(broker_url.split("+", 1)[1]).database
    if not path or path == ":memory:":
        return
    # The data directory may not exist yet when a worker starts first.
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path, timeout=30) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


EMBEDDED_POLLING_SECONDS = 0.02


def create_celery(settings: Settings) -> Celery:
    app = Celery("riskrank", broker=settings.broker_url, set_as_current=False)
    transport_options: dict[str, Any] = {}
    if _is_embedded_broker(settings.broker_url):
        # Passed to create_engine by Kombu: SQLite's busy timeout.
        transport_options["connect_args"] = {"timeout": 30}
        # Kombu's polling transports sleep this long whenever they fetch
        # nothing, and also while every task slot is busy (1 s by default):
        # a worker of two slots then started about two tasks a second, and
        # drained 2-3 push events a second (each is two tasks). An idle
        # worker pays one small SELECT per interval. Set on the class: the
        # SQLAlchemy transport hands its options to create_engine, which
        # refuses this one.
        kombu_sqlalchemy.Transport.polling_interval = EMBEDDED_POLLING_SECONDS
    app.conf.update(
        task_default_queue=QUEUE_NAME,
        # Lose nothing: a message is acknowledged after its task ran, and
        # given back if the worker process died while running it.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Tasks write their results to the database; there is no result backend.
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=settings.publish_timeout_seconds,
        broker_transport_options=transport_options,
        worker_hijack_root_logger=False,
        beat_schedule={
            "sweep-unhandled-events": {
                "task": EVENTS_SWEEP,
                "schedule": settings.sweep_interval_seconds,
            },
            "sweep-uningested-runs": {
                "task": RUNS_SWEEP,
                "schedule": settings.sweep_interval_seconds,
            },
            "retrain-models": {
                "task": MODELS_TRAIN_DUE,
                "schedule": settings.train_check_seconds,
            },
            "prune-past-retention": {
                "task": MAINTENANCE_PRUNE,
                "schedule": settings.prune_interval_seconds,
            },
        },
        beat_schedule_filename=settings.beat_schedule_file,
        timezone="UTC",
    )
    return app


# The apps that have declared their queue on the broker once: Celery would
# declare it again with every message (the cost of a webhook's publish was
# half that), and a message for the default exchange goes to the queue of
# its routing key whether or not it is declared again.
_declared: weakref.WeakSet[Celery] = weakref.WeakSet()


@dataclass(frozen=True)
class _PendingTask:
    celery: Celery
    name: str
    args: tuple[Any, ...]


def send_now(celery: Celery, name: str, *args: Any) -> bool:
    """Publish a task; False (and a log line) if the broker cannot take it.

    Never raises: what was meant to be sent is stored in the database and the
    sweeper queues it again once the broker is back."""
    options: dict[str, Any] = {"declare": []} if celery in _declared else {}
    try:
        celery.send_task(
            name,
            args=args,
            retry=True,
            retry_policy={
                "max_retries": 1,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.2,
            },
            **options,
        )
    except Exception as error:
        metrics.TASKS_PUBLISH_FAILED.labels(task=name).inc()
        log.warning("could not queue %s%r, it stays for the sweeper: %s", name, args, error)
        return False
    _declared.add(celery)
    return True


def enqueue_after_commit(session: Session, celery: Celery, name: str, *args: Any) -> None:
    """Send `name(*args)` once `session` commits; drop it if it rolls back."""
    session.info.setdefault(_PENDING_KEY, []).append(_PendingTask(celery, name, args))


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    pending: list[_PendingTask] = session.info.pop(_PENDING_KEY, [])
    for task in pending:
        send_now(task.celery, task.name, *task.args)


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.nested:
        return  # a savepoint rolled back; the outer transaction may still commit
    session.info.pop(_PENDING_KEY, None)
