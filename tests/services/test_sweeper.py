"""The sweeper (scheduler.services.retry, workers.events.sweep): it never
waits on a row a worker holds (PostgreSQL rows locked from another
connection), and on a real Redis queue drained by a real worker it queues
again only the events whose message is gone, never those merely waiting
behind it in a backlog."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from scheduler.config import Settings
from scheduler.db import Database, Timeouts
from scheduler.models import CiEvent, EventStatus, Provider
from scheduler.models.base import utcnow
from scheduler.queue import EVENTS_PROCESS, EVENTS_SWEEP, QUEUE_NAME, create_celery, send_now
from scheduler.services import events, repos
from tests.conftest import empty_all_tables
from tests.e2e.conftest import RISKRANK, Process, clean_env
from tests.helpers import wait_for

PAYLOAD = {"repository": {"full_name": "acme/widgets"}}


def store(database: Database, delivery: str, *, event: str = "check_run") -> int:
    """A stored, pending event (`check_run`: the worker ignores it at once)."""
    with database.session() as session:
        repository = repos.find_repository(
            session, provider=Provider.GITHUB, full_name="acme/widgets"
        )
        assert repository is not None
        return events.store_event(
            session,
            repository_id=repository.id,
            provider=Provider.GITHUB,
            delivery_id=delivery,
            event=event,
            payload=PAYLOAD,
        ).id


def age(database: Database, event_ids: list[int], *, minutes: float) -> None:
    with database.session() as session:
        session.execute(
            update(CiEvent)
            .where(CiEvent.id.in_(event_ids))
            .values(received_at=utcnow() - timedelta(minutes=minutes))
        )


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    # A statement timeout: a sweep that waited on a lock fails the test
    # instead of hanging it.
    database = Database.from_url(postgres_url, Timeouts(statement_seconds=5))
    empty_all_tables(database)
    with database.session() as session:
        repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/widgets")
    yield database
    database.dispose()


def claim(database: Database) -> list[int]:
    with database.session() as session:
        return events.claim_unhandled_events(
            session, queued_before=utcnow() - timedelta(seconds=30), max_attempts=10
        )


def test_a_sweep_skips_the_rows_a_worker_holds_without_waiting(
    pg: Database, postgres_url: str
) -> None:
    lost = [store(pg, f"lost-{number}") for number in range(3)]
    age(pg, lost, minutes=10)
    held = lost[1]
    dsn = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    # What events.process holds for a whole attempt: the event's row lock.
    with psycopg.connect(dsn) as worker:
        worker.execute("SELECT id FROM ci_events WHERE id = %s FOR UPDATE", (held,))
        started = time.monotonic()
        claimed = claim(pg)
        elapsed = time.monotonic() - started
        assert claimed == [lost[0], lost[2]]
        assert elapsed < 1.0, f"the sweep waited {elapsed:.1f} s on the held row"
        worker.rollback()  # the attempt died without handling the event
    # Free again and still pending: the next sweep queues it.
    assert claim(pg) == [held]
    assert claim(pg) == []


def test_two_sweeps_at_once_claim_disjoint_rows_without_waiting(pg: Database) -> None:
    lost = [store(pg, f"lost-{number}") for number in range(4)]
    age(pg, lost, minutes=10)
    with pg.session() as first_session:
        first = events.claim_unhandled_events(
            first_session, queued_before=utcnow(), max_attempts=10, limit=2
        )
        # The first sweep's transaction is still open, its rows locked.
        started = time.monotonic()
        second = claim(pg)
        assert time.monotonic() - started < 1.0
    assert first == lost[:2]
    assert second == lost[2:]


def queued_at(database: Database) -> dict[int, bool]:
    """Per event: whether a sweep ever queued it again."""
    with database.session() as session:
        return {
            event_id: requeued is not None
            for event_id, requeued in session.execute(select(CiEvent.id, CiEvent.queued_at))
        }


def pending(database: Database) -> int:
    with database.session() as session:
        return len(
            session.scalars(select(CiEvent.id).where(CiEvent.status == EventStatus.PENDING)).all()
        )


@pytest.mark.slow
def test_a_sweep_requeues_lost_events_and_leaves_a_backlog_waiting(
    db_url: str,
    database: Database,
    redis_url: str,
    redis_server: redis.Redis,
    tmp_path: Path,
) -> None:
    """The queue, in order: 20 events, a sweep, 20 more events, a sweep.
    Five more events were stored while the broker was down (never
    published). The first sweep runs when the first 20 are handled and the
    next 20 still wait behind it: it queues the five lost ones again, and
    none of the waiting ones (a sweep by age alone, with a 1 s minimum age,
    would have queued all 20). The second sweep finds the five waiting
    behind it again and leaves them alone."""
    with database.session() as session:
        repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/widgets")
    margin = 1.0
    celery = create_celery(Settings(database_url=db_url, broker_url=redis_url))

    lost = [store(database, f"lost-{number}") for number in range(5)]
    age(database, lost, minutes=10)

    def publish(delivery: str) -> int:
        event_id = store(database, delivery)
        assert send_now(celery, EVENTS_PROCESS, event_id)
        return event_id

    first = [publish(f"first-{number}") for number in range(20)]
    assert send_now(celery, EVENTS_SWEEP)
    time.sleep(margin + 0.5)
    second = [publish(f"second-{number}") for number in range(20)]
    time.sleep(margin + 0.5)
    assert send_now(celery, EVENTS_SWEEP)
    assert redis_server.llen(QUEUE_NAME) == 42

    env = clean_env(
        RISKRANK_DATABASE_URL=db_url,
        RISKRANK_BROKER_URL=redis_url,
        RISKRANK_SWEEP_MIN_AGE_SECONDS=str(margin),
    )
    worker = Process(
        [RISKRANK, "worker", "--concurrency", "1"], env=env, cwd=tmp_path, log=tmp_path / "w.log"
    )
    try:
        wait_for(
            lambda: pending(database) == 0 and redis_server.llen(QUEUE_NAME) == 0,
            timeout=120,
            what=f"every event to be handled; the worker said:\n{worker.output()}",
        )
    finally:
        worker.stop()
    requeued = queued_at(database)
    assert sorted(event_id for event_id, again in requeued.items() if again) == lost
    assert not any(requeued[event_id] for event_id in first + second)
    with database.session() as session:
        statuses = set(session.scalars(select(CiEvent.status)))
        attempts = set(session.scalars(select(CiEvent.attempts)))
    assert statuses == {EventStatus.IGNORED}
    assert attempts == {1}
    assert "sweeper queued 5 events.process tasks again" in worker.output()
