"""What the sweepers share, for rows that wait for a worker (QueuedWork:
events and runs)."""

from __future__ import annotations

from datetime import timedelta

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
    older_than: timedelta,
    max_attempts: int,
    limit: int = 500,
) -> list[int]:
    """Pending rows last queued more than `older_than` ago (the broker was
    down, a worker died), oldest first. They are marked as queued now, so the
    next sweep leaves them alone while they wait in the queue."""
    now = utcnow()
    last_queued = func.coalesce(model.queued_at, model.received_at)
    ids = list(
        session.scalars(
            select(model.id)
            .where(
                model.status == PENDING,
                model.attempts < max_attempts,
                last_queued <= now - older_than,
            )
            .order_by(model.received_at)
            .limit(limit)
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
