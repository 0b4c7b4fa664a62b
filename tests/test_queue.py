"""Enqueue-after-commit on a real Redis broker."""

import time

import pytest
import redis

from scheduler.config import Settings
from scheduler.db import Database
from scheduler.queue import EVENTS_PROCESS, create_celery, enqueue_after_commit, send_now
from tests.helpers import queued_tasks


def test_task_is_sent_only_when_the_transaction_commits(
    settings: Settings, database: Database, redis_server: redis.Redis
) -> None:
    celery = create_celery(settings)
    with database.session() as session:
        enqueue_after_commit(session, celery, EVENTS_PROCESS, 41)
        session.flush()
        assert queued_tasks(redis_server) == []
    assert queued_tasks(redis_server) == [(EVENTS_PROCESS, [41])]


def test_rollback_drops_the_pending_task(
    settings: Settings, database: Database, redis_server: redis.Redis
) -> None:
    celery = create_celery(settings)

    def failing_request() -> None:
        with database.session() as session:
            enqueue_after_commit(session, celery, EVENTS_PROCESS, 42)
            raise RuntimeError("the request failed")

    with pytest.raises(RuntimeError):
        failing_request()
    # The next unit of work on a new session sends nothing stale.
    with database.session():
        pass
    assert queued_tasks(redis_server) == []


def test_rolled_back_savepoint_keeps_the_outer_task(
    settings: Settings, database: Database, redis_server: redis.Redis
) -> None:
    celery = create_celery(settings)
    with database.session() as session:
        enqueue_after_commit(session, celery, EVENTS_PROCESS, 43)
        savepoint = session.begin_nested()
        savepoint.rollback()
    assert queued_tasks(redis_server) == [(EVENTS_PROCESS, [43])]


def test_send_with_the_broker_down_returns_false_quickly(db_url: str) -> None:
    celery = create_celery(
        Settings(
            database_url=db_url, broker_url="redis://127.0.0.1:1/0", publish_timeout_seconds=0.5
        )
    )
    started = time.monotonic()
    assert send_now(celery, EVENTS_PROCESS, 1) is False
    # Bounded, so a webhook request never hangs on the broker.
    assert time.monotonic() - started < 5
