"""The Celery app, the task names, and enqueue-after-commit.

`scheduler` never imports `workers`: it sends tasks by name. A task is sent
only once the transaction that created its rows has committed, and a rollback
drops it, so a worker never looks for a row that is not there."""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kombu
from celery import Celery
from celery.signals import before_task_publish
from celery.utils.nodenames import anon_nodename
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


_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


@dataclass(frozen=True)
class _PendingTask:
    celery: Celery
    name: str
    args: tuple[Any, ...]


class _Publisher:
    """What `send_now` publishes with, one per app: idle Kombu producers
    kept for the next send (one thread at a time uses one), and whether the
    queue was declared on the broker yet.

    A webhook's publish through `Celery.send_task` cost about 0.3 ms of CPU,
    most of it routing, signals, a producer taken from Celery's pool and
    Kombu's serialiser, for a message that is the same every time but for
    its id: here it is built by Celery's own `as_task_v2` (the worker reads
    an ordinary task message), serialised with the standard library, and
    published on a kept producer. Declaring the queue again with every
    message doubled the cost; a message for the default exchange goes to
    the queue of its routing key whether or not it is declared again."""

    def __init__(self, celery: Celery) -> None:
        self.queue = celery.amqp.queues[QUEUE_NAME]
        # 2 is persistent, what Celery sends unless the exchange says otherwise.
        self.delivery_mode: int = self.queue.exchange.delivery_mode or 2
        self.declared = False
        self.idle: queue.SimpleQueue[kombu.Producer] = queue.SimpleQueue()
        # The message's origin header, as Celery names it (host and pid):
        # made once, not for every message (a publisher is per process).
        self.origin = anon_nodename()

    def publish(self, celery: Celery, name: str, args: tuple[Any, ...]) -> None:
        try:
            producer = self.idle.get_nowait()
        except queue.Empty:
            producer = kombu.Producer(celery.connection_for_write(), auto_declare=False)
        task_id = str(uuid.uuid4())
        message = celery.amqp.as_task_v2(
            task_id,
            name,
            args=args,
            ignore_result=True,
            origin=self.origin,
            argsrepr=_args_repr(args),
            kwargsrepr="{}",
        )
        headers = message.headers
        if name in _STAMPED:
            headers[SENT_AT_HEADER] = time.time()
        try:
            producer.publish(
                json.dumps(message.body),
                exchange="",
                routing_key=QUEUE_NAME,
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=self.delivery_mode,
                headers=headers,
                declare=[] if self.declared else [self.queue],
                retry=True,
                retry_policy=_RETRY_POLICY,
                **message.properties,
            )
        except BaseException:
            # Its connection may be broken: the next send opens another.
            if producer.connection is not None:
                producer.connection.release()
            raise
        self.declared = True
        self.idle.put(producer)


def _args_repr(args: tuple[Any, ...]) -> str | None:
    """The argsrepr header of a task's arguments: for ids (every task the
    api sends) repr itself, which is what Celery's saferepr gives them at
    several times the cost (about 2% of a webhook's CPU); None otherwise,
    for Celery to make."""
    if all(type(arg) is int for arg in args):
        return repr(args)
    return None


_publishers: weakref.WeakKeyDictionary[Celery, _Publisher] = weakref.WeakKeyDictionary()


# A forked child (a prefork worker's slot) opens its own connections: the
# parent's sockets are not the child's to write on.
os.register_at_fork(after_in_child=_publishers.clear)


def _publisher(celery: Celery) -> _Publisher:
    publisher = _publishers.get(celery)
    if publisher is None:
        # Two threads may make one each: one is kept, the other has no producer yet.
        publisher = _publishers.setdefault(celery, _Publisher(celery))
    return publisher


def send_now(celery: Celery, name: str, *args: Any, swept: bool = True) -> bool:
    """Publish a task; False (and a log line) if the broker cannot take it.

    Never raises: what was meant to be sent is stored in the database and the
    sweeper queues it again once the broker is back; `swept=False` for a
    task no sweeper queues again (a commit status), which is then dropped."""
    try:
        _publisher(celery).publish(celery, name, args)
    except Exception as error:
        metrics.TASKS_PUBLISH_FAILED.labels(task=name).inc()
        fate = "it stays for the sweeper" if swept else "dropped: nothing queues it again"
        log.warning("could not queue %s%r, %s: %s", name, args, fate, error)
        return False
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
