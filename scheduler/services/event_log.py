"""The stored CI events as an operator reads them, and replaying one.

A replay puts the event back to pending, its attempts and error cleared, so
that `events.process` handles it again; the caller sends that task once the
transaction committed. Handling is idempotent (commits and changed files
are inserted once, results once per run), so replaying a handled event
changes nothing that is already there."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.models import CiEvent, EventStatus, Repository
from scheduler.models.base import utcnow


class UnknownEvent(Exception):
    """No stored event has this id (or it was pruned)."""


@dataclass(frozen=True)
class EventRow:
    id: int
    repository: str | None
    provider: str
    event: str
    action: str | None
    delivery_id: str
    status: str
    attempts: int
    received_at: datetime
    handled_at: datetime | None
    error: str | None
    summary: dict[str, Any] | None = None  # a pulled run's jobs (CiEvent.summary)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "repository": self.repository,
            "provider": self.provider,
            "event": self.event,
            "action": self.action,
            "delivery_id": self.delivery_id,
            "status": self.status,
            "attempts": self.attempts,
            "received_at": self.received_at.isoformat(),
            "handled_at": self.handled_at.isoformat() if self.handled_at else None,
            "error": self.error,
            "summary": self.summary,
        }


def _row(event: CiEvent, repository: str | None) -> EventRow:
    return EventRow(
        id=event.id,
        repository=repository,
        provider=event.provider.value,
        event=event.event,
        action=event.action,
        delivery_id=event.delivery_id,
        status=event.status.value,
        attempts=event.attempts,
        received_at=event.received_at,
        handled_at=event.handled_at,
        error=event.error,
        summary=event.summary,
    )


def list_events(
    session: Session,
    *,
    repository_id: int | None = None,
    statuses: list[EventStatus] | None = None,
    limit: int = 50,
) -> list[EventRow]:
    """The newest events first, of one repository or all, in the statuses
    given (all without)."""
    query = (
        select(CiEvent, Repository)
        .outerjoin(Repository, Repository.id == CiEvent.repository_id)
        .order_by(CiEvent.received_at.desc(), CiEvent.id.desc())
        .limit(max(0, limit))
    )
    if repository_id is not None:
        query = query.where(CiEvent.repository_id == repository_id)
    if statuses:
        query = query.where(CiEvent.status.in_(statuses))
    return [
        _row(event, repository.full_name if repository is not None else None)
        for event, repository in session.execute(query)
    ]


@dataclass(frozen=True)
class Replayed:
    id: int
    previous_status: str


def replay_event(session: Session, event_id: int) -> Replayed:
    """Put the event back to pending, to be handled again (the caller sends
    `events.process` after the commit)."""
    event = session.get(CiEvent, event_id, with_for_update=True)
    if event is None:
        raise UnknownEvent(f"no CI event {event_id} (see `riskrank events list`)")
    previous = event.status.value
    event.status = EventStatus.PENDING
    event.attempts = 0
    event.error = None
    event.handled_at = None
    # Queued now: the sweeper leaves it to the message sent below, and
    # queues it again itself if that message is lost.
    event.queued_at = utcnow()
    return Replayed(id=event.id, previous_status=previous)
