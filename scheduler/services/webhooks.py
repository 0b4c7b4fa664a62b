"""A webhook delivery: verify, record once, queue. Nothing else happens inline."""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session

from scheduler import limits
from scheduler.ingest import generic, github, gitlab
from scheduler.ingest.errors import (
    BadSignature,
    MalformedPayload,
    MissingHeader,
    SecretNotConfigured,
    UnknownRepository,
)
from scheduler.ingest.payload import decode_json_body, verify_hmac_sha256
from scheduler.models import EventStatus, Provider, Repository
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


def _registered(session: Session, *, provider: Provider, full_name: str) -> tuple[Repository, str]:
    """The repository a delivery names, and the secret to check it against."""
    repository = repos.find_repository(session, provider=provider, full_name=full_name)
    if repository is None:
        option = "" if provider is Provider.GITHUB else f" --provider {provider.value}"
        raise UnknownRepository(
            f"{provider.value} repository {full_name} is not registered; "
            f"run: riskrank repo add {full_name}{option}"
        )
    if not repository.webhook_secret:
        raise SecretNotConfigured(f"repository {full_name} has no webhook secret")
    return repository, repository.webhook_secret


def _store(
    session: Session,
    celery: Celery,
    *,
    repository: Repository,
    provider: Provider,
    delivery_id: str,
    event: str,
    payload: dict[str, Any],
    status: EventStatus,
) -> Receipt:
    """Record a verified delivery once, and queue it if it is work."""
    stored = events.store_event(
        session,
        repository=repository,
        provider=provider,
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
    delivery_id = limits.text(
        _required(delivery_id, github.DELIVERY_HEADER),
        github.DELIVERY_HEADER,
        max_chars=limits.NAME_CHARS,
    )
    signature = _required(signature, github.SIGNATURE_HEADER)

    payload = decode_json_body(body, content_type)
    full_name = github.repository_full_name(payload)
    repository, secret = _registered(session, provider=Provider.GITHUB, full_name=full_name)
    verify_hmac_sha256(secret, body, signature, header=github.SIGNATURE_HEADER)

    if event in github.HANDLED_EVENTS:
        # What the worker will store is checked now: refused here, not lost there.
        github.parse_push(payload)
        status = EventStatus.PENDING
    elif event in github.RECORDED_EVENTS:
        status = EventStatus.IGNORED
    else:
        return Receipt(ReceiptStatus.IGNORED)
    return _store(
        session,
        celery,
        repository=repository,
        provider=Provider.GITHUB,
        delivery_id=delivery_id,
        event=event,
        payload=payload,
        status=status,
    )


def receive_gitlab(
    session: Session,
    celery: Celery,
    *,
    event: str | None,
    token: str | None,
    idempotency_key: str | None,
    event_uuid: str | None,
    body: bytes,
) -> Receipt:
    """Check a GitLab delivery and store it; raises an IngestError for a
    delivery that must be refused, before anything is written.

    GitLab sends the webhook's secret token itself, not a signature: it is
    compared, in constant time, with the repository's webhook secret. Push
    Hooks are stored and queued, Tag Push Hooks stored for the record, every
    other event acknowledged and dropped (gitlab.HANDLED_EVENTS, ...)."""
    event = _required(event, gitlab.EVENT_HEADER)
    if not token:
        raise BadSignature(
            f"{gitlab.TOKEN_HEADER} header is required: set the GitLab webhook's "
            "secret token to the repository's webhook secret"
        )
    # GitLab sends JSON only, whatever a replaying client declares.
    payload = decode_json_body(body, None)
    if event in gitlab.HANDLED_EVENTS:
        status: EventStatus | None = EventStatus.PENDING
    elif event in gitlab.RECORDED_EVENTS:
        status = EventStatus.IGNORED
    else:
        status = None

    path = gitlab.project_path(payload)
    if path is None:
        if status is None:
            # An event riskrank drops that names no project (older GitLab's
            # Job Hooks): there is no secret to check it against, and nothing
            # is stored or queued for it.
            return Receipt(ReceiptStatus.IGNORED)
        raise MalformedPayload("payload has no project.path_with_namespace")
    repository, secret = _registered(session, provider=Provider.GITLAB, full_name=path)
    if not hmac.compare_digest(token.encode(), secret.encode()):
        raise BadSignature(f"{gitlab.TOKEN_HEADER} does not match the repository's webhook secret")
    if status is None:
        return Receipt(ReceiptStatus.IGNORED)
    if status is EventStatus.PENDING:
        gitlab.parse_push(payload)
    return _store(
        session,
        celery,
        repository=repository,
        provider=Provider.GITLAB,
        delivery_id=gitlab.delivery_id(
            idempotency_key=idempotency_key, event_uuid=event_uuid, body=body
        ),
        event=event,
        payload=payload,
        status=status,
    )


def receive_generic(
    session: Session,
    celery: Celery,
    *,
    signature: str | None,
    delivery_id: str | None,
    body: bytes,
) -> Receipt:
    """Check a generic CI event (one commit, ingest/generic.py) and store it;
    raises an IngestError for an event that must be refused, before anything
    is written. The body is checked in full here, so that its sender hears
    what is wrong with it."""
    signature = _required(signature, generic.SIGNATURE_HEADER)
    # Always JSON: `curl -d` declares a form whatever it sends.
    payload = decode_json_body(body, None)
    full_name = generic.repository_name(payload)
    repository, secret = _registered(session, provider=Provider.GENERIC, full_name=full_name)
    verify_hmac_sha256(secret, body, signature, header=generic.SIGNATURE_HEADER)
    commit = generic.parse_commit(payload)
    delivery = generic.delivery_id(header=delivery_id, commit=commit, body=body)
    return _store(
        session,
        celery,
        repository=repository,
        provider=Provider.GENERIC,
        # A generic sender picks its own ids (a build number, say), which
        # other repositories' senders may pick too: they are kept apart by
        # the repository. Without an id, the same body is the same event.
        delivery_id=f"{repository.id}:{delivery}",
        event=generic.COMMIT,
        payload=payload,
        status=EventStatus.PENDING,
    )
