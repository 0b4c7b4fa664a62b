"""Raw CI events, exactly as they arrived."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from scheduler import limits
from scheduler.models.base import Base, BigIntId, JSONType, QueuedWork, str_enum
from scheduler.models.enums import EventStatus, Provider


class CiEvent(QueuedWork, Base):
    __tablename__ = "ci_events"
    __table_args__ = (
        # A redelivery carries the same delivery id: stored once.
        UniqueConstraint("provider", "delivery_id"),
        # The sweeper's query: unhandled events, oldest first.
        Index("ix_ci_events_status_received_at", "status", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    provider: Mapped[Provider] = mapped_column(str_enum(Provider, "provider"))
    delivery_id: Mapped[str] = mapped_column(String(limits.NAME_CHARS))
    event: Mapped[str] = mapped_column(String(limits.EVENT_CHARS))
    action: Mapped[str | None] = mapped_column(String(limits.EVENT_CHARS))
    repository_id: Mapped[int | None] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), index=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[EventStatus] = mapped_column(
        str_enum(EventStatus, "event_status"), default=EventStatus.PENDING
    )
    handled_at: Mapped[datetime | None]
    # What a pull read of the CI run beside its reports (scheduler.services.
    # pulls): {"jobs": [{"name": …, "conclusion": …}]}. NULL: nothing read.
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
