"""A webhook delivery: verify, record once, queue. Nothing else happens inline."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from celery import Celery
from sqlalchemy.orm import Session

from scheduler.ingest import github
from scheduler.ingest.errors import MissingHeader, SecretNotConfigured, UnknownRepository
from scheduler.ingest.payload import decode_json_body, verify_hmac_sha256
from scheduler.models import EventStatus, Provider
from scheduler.queue import EVENTS_PROCESS, enqueue_after_commit
from scheduler.services import events, repos


class ReceiptStatus(enum.StrEnum):
    QUEUED = "queued"  # stored, and a worker will process it
    RECORDED = "recorded"  # stored for the record, nothing to process (ping)
    DUPLICATE = "duplicate"  # a redelivery of what is already stored
    IGNORED = "ignored"  # an event riskrank does not use: not stored


@dataclass(frozen=True)
class Receipt:
    status: ReceiptStatus
    event_id: int | None = None


def _required(value: str | None, header: str) -> str:
    if not value or not value.strip():
        raise MissingHeader(f"{header} header is required")
    return value.strip()


def receive_github(
    session: Session,
    celery: Celery,
    *,
    event: str | None,
    delivery_id: str | None,
    signature: str | None,
    content_type: str | None,
    body: bytes,
) -> Receipt:
    """Check a GitHub delivery and store it; raises an IngestError for a
    delivery that must be refused, before anything is written."""
    event = _required(event, github.EVENT_HEADER)
    delivery_id = _required(delivery_id, github.DELIVERY_HEADER)
    signature = _required(signature, github.SIGNATURE_HEADER)

    payload = decode_json_body(body, content_type)
    full_name = github.repository_full_name(payload)
    repository = repos.find_repository(session, provider=Provider.GITHUB, full_name=full_name)
    if repository is None:
        raise UnknownRepository(
            f"repository {full_name} is not registered; run: riskrank repo add {full_name}"
        )
    if not repository.webhook_secret:
        raise SecretNotConfigured(f"repository {full_name} has no webhook secret")
    verify_hmac_sha256(repository.webhook_secret, body, signature, header=github.SIGNATURE_HEADER)

    if event in github.HANDLED_EVENTS:
        status = EventStatus.PENDING
    elif event in github.RECORDED_EVENTS:
        status = EventStatus.IGNORED
    else:
        return Receipt(ReceiptStatus.IGNORED)

    stored = events.store_event(
        session,
        repository=repository,
        provider=Provider.GITHUB,
        delivery_id=delivery_id,
        event=event,
        payload=payload,
        status=status,
    )
    if not stored.created:
        return Receipt(ReceiptStatus.DUPLICATE, stored.id)
    if status is EventStatus.PENDING:
        enqueue_after_commit(session, celery, EVENTS_PROCESS, stored.id)
        return Receipt(ReceiptStatus.QUEUED, stored.id)
    return Receipt(ReceiptStatus.RECORDED, stored.id)
