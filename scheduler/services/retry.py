"""What the sweepers share, for rows that wait for a worker (QueuedWork:
events and runs).

When is a pending row's task lost? The row cannot say whether its message is
still waiting in the broker's queue (a backlog of thousands is normal after a
burst) or is gone (the broker was down when it was published, a broker lost
it on restart, the worker that took it died or its attempt failed). The
sweep task's own message can: it went through the same FIFO queue, so every
message published before it has been delivered by the time it runs. A row
last queued before the sweep's message was published, that no worker holds
now and that is still pending, therefore has no message waiting for it: its
attempt failed or died, or its message was lost. Rows queued after the
sweep's message may be waiting behind it and are left alone, however long
the backlog. `queued_before` is that publication time less a margin (clock
skew between machines, the moment between a commit and its publish, a
message reserved by a worker but not started yet).

A row a worker is handling is never waited on: the tasks hold its row lock
for the whole attempt, and on PostgreSQL the sweep skips locked rows
(``FOR UPDATE SKIP LOCKED``). On SQLite a running task holds the database's
write lock, so there is nothing to skip: the sweep runs after it commits (or
gives up on the busy timeout and tries at the next interval)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from scheduler.models import CiEvent, SuiteRun
from scheduler.models.base import QueuedWork, utcnow

ERROR_TEXT_LIMIT = 4000
PENDING = "pending"  # the waiting status of both EventStatus and RunStatus


def claim_stale(
    session: Session,
    model: type[CiEvent] | type[SuiteRun],
    *,
    queued_before: datetime,
    max_attempts: int,
    limit: int = 500,
) -> list[int]:
    """Pending rows last queued before `queued_before` and held by no
    worker (see the module's docstring), oldest first. They are marked as
    queued now, so later sweeps leave them alone while they wait again."""
    now = utcnow()
    last_queued = func.coalesce(model.queued_at, model.received_at)
    ids = list(
        session.scalars(
            select(model.id)
            .where(
                model.status == PENDING,
                model.attempts < max_attempts,
                last_queued <= queued_before,
            )
            .order_by(model.received_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if ids:
        session.execute(update(model).where(model.id.in_(ids)).values(queued_at=now))
    return ids


def count_failure(row: QueuedWork, *, error: str, max_attempts: int) -> bool:
    """Note a failed attempt and why; True once the attempts are spent."""
    row.attempts += 1
    row.error = error[:ERROR_TEXT_LIMIT]
    return row.attempts >= max_attempts
