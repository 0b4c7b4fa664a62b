"""A webhook delivery: verify, record once, queue. Nothing else happens inline."""

from __future__ import annotations

import base64
import enum
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session

from scheduler import limits
from scheduler.ingest import generic, github, gitlab
from scheduler.ingest.errors import BadSignature, MalformedPayload, MissingHeader
from scheduler.ingest.payload import (
    check_timestamp,
    decode_json_body,
    hash_secret,
    mismatch,
    secret_matches,
    standard_signature_matches,
    verify_hmac_sha256,
)
from scheduler.models import EventStatus, Provider
from scheduler.queue import EVENTS_PROCESS, enqueue_after_commit
from scheduler.services import changes, events, pulls, repos

logger = logging.getLogger(__name__)


class ReceiptStatus(enum.StrEnum):
    QUEUED = "queued"  # stored, and a worker will process it
    RECORDED = "recorded"  # stored for the record, nothing to process (ping)
    DUPLICATE = "duplicate"  # a redelivery of what is already stored
    IGNORED = "ignored"  # an event riskrank does not use: not stored


@dataclass(frozen=True)
class Receipt:
    status: ReceiptStatus
    event_id: int | None = None


class SecretCache:
    """The webhook secrets of one database as the API last read them, for
    `seconds` each: a busy repository's deliveries then skip the lookup.

    What that means for an operator: a secret set or rotated with
    `riskrank repo secret` (or a repository added or removed) takes effect in
    every API process within `seconds` (2 by default,
    RISKRANK_WEBHOOK_SECRET_CACHE_SECONDS; 0 reads the database every time):
    for that long a process may still accept the old secret and refuse the
    new one. Unknown repositories are kept too, so that a refusal costs the
    same whether the repository exists or not; at most `max_entries` names
    are kept (past that the cache starts afresh), so that deliveries naming
    made-up repositories cannot fill the memory."""

    def __init__(self, seconds: float, *, max_entries: int = 4096) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: dict[tuple[Provider, str], tuple[float, repos.WebhookSecret | None]] = {}
        self._lock = threading.Lock()

    def find(
        self, session: Session, *, provider: Provider, full_name: str
    ) -> repos.WebhookSecret | None:
        """repos.find_webhook_secret, read at most once every `seconds`."""
        if self.seconds <= 0:
            return repos.find_webhook_secret(session, provider=provider, full_name=full_name)
        key = (provider, full_name)
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        known = repos.find_webhook_secret(session, provider=provider, full_name=full_name)
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (now + self.seconds, known)
        return known


def _find_secret(
    session: Session, cache: SecretCache | None, *, provider: Provider, full_name: str
) -> repos.WebhookSecret | None:
    if cache is None:
        return repos.find_webhook_secret(session, provider=provider, full_name=full_name)
    return cache.find(session, provider=provider, full_name=full_name)


def _required(value: str | None, header: str) -> str:
    if not value or not value.strip():
        raise MissingHeader(f"{header} header is required")
    return value.strip()


# What a delivery is checked against when its repository is unknown or has no
# secret: the check then costs what a real one costs and fails the same way,
# so neither the answer nor its timing tells which repositories exist.
_UNKNOWN_SECRET = secrets.token_hex(32)
_UNKNOWN_SECRET_HASH = hash_secret(secrets.token_hex(32))


def _refuse(provider: Provider, full_name: str, reason: str, header: str) -> BadSignature:
    """The one refusal for every reason; the reason goes to the log only."""
    logger.info("refused a %s delivery for %r: %s", provider.value, full_name, reason)
    return BadSignature(mismatch(header))


def _why_no_secret(known: repos.WebhookSecret | None) -> str:
    if known is None:
        return "the repository is not registered"
    return "the repository has no webhook secret"


def _verified_hmac(
    session: Session,
    *,
    provider: Provider,
    full_name: str,
    body: bytes,
    signature: str,
    header: str,
    cache: SecretCache | None,
) -> int:
    """The id of the repository a signed delivery names, once its signature
    verifies with the repository's secret; BadSignature (401) alike for an
    unknown repository, one without a secret, and a wrong signature."""
    known = _find_secret(session, cache, provider=provider, full_name=full_name)
    secret = known.secret if known is not None else None
    try:
        verify_hmac_sha256(secret or _UNKNOWN_SECRET, body, signature, header=header)
    except BadSignature as error:
        # Its message is the same whatever the repository (a malformed
        # header, or `mismatch`): only the log says why.
        reason = error.message if known is not None and secret else _why_no_secret(known)
        logger.info("refused a %s delivery for %r: %s", provider.value, full_name, reason)
        raise
    if known is None or not secret:
        # An empty secret would verify anything: refuse rather than trust.
        raise _refuse(provider, full_name, _why_no_secret(known), header)
    return known.repository_id


_UNKNOWN_SIGNING_TOKEN = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class GitlabCredentials:
    """What a GitLab delivery authenticates with: its secret token, and its
    signature when the webhook has a signing token."""

    token: str | None = None
    signature: str | None = None
    webhook_id: str | None = None
    timestamp: str | None = None


def _verified_gitlab(
    session: Session,
    *,
    full_name: str,
    body: bytes,
    credentials: GitlabCredentials,
    cache: SecretCache | None,
) -> int:
    """The id of the GitLab repository a delivery names, once it is
    authenticated: with a signing token, by its webhook-signature (and an
    X-Gitlab-Token sent beside it must match too); without one, by its
    X-Gitlab-Token against the stored hash of the secret. BadSignature (401)
    alike otherwise, whatever the reason."""
    known = _find_secret(session, cache, provider=Provider.GITLAB, full_name=full_name)
    stored = known.secret_hash if known is not None else None
    signing = known.signing_token if known is not None else None
    # Both checks run whatever is stored: a refusal costs the same.
    token_matches = secret_matches(credentials.token or "", stored or _UNKNOWN_SECRET_HASH)
    signature_matches = standard_signature_matches(
        signing or _UNKNOWN_SIGNING_TOKEN,
        webhook_id=credentials.webhook_id or "",
        timestamp=credentials.timestamp or "",
        body=body,
        header_value=credentials.signature or "",
    )
    if known is None or not (stored or signing):
        header = gitlab.TOKEN_HEADER if credentials.token else gitlab.SIGNATURE_HEADER
        raise _refuse(Provider.GITLAB, full_name, _why_no_secret(known), header)
    if signing:
        # The signature is required and enough; a secret token sent beside
        # it must still be the right one.
        if not signature_matches:
            why = "the signature does not match" if credentials.signature else "no signature"
            raise _refuse(Provider.GITLAB, full_name, why, gitlab.SIGNATURE_HEADER)
        if credentials.token and stored and not token_matches:
            raise _refuse(
                Provider.GITLAB, full_name, "the token does not match", gitlab.TOKEN_HEADER
            )
    elif not token_matches:
        why = "the token does not match" if credentials.token else "no X-Gitlab-Token"
        raise _refuse(Provider.GITLAB, full_name, why, gitlab.TOKEN_HEADER)
    return known.repository_id


def _store(
    session: Session,
    celery: Celery,
    *,
    repository_id: int,
    provider: Provider,
    delivery_id: str,
    event: str,
    payload: dict[str, Any],
    status: EventStatus,
) -> Receipt:
    """Record a verified delivery once, and queue it if it is work."""
    stored = events.store_event(
        session,
        repository_id=repository_id,
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
    secrets_cache: SecretCache | None = None,
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
    repository_id = _verified_hmac(
        session,
        provider=Provider.GITHUB,
        full_name=full_name,
        body=body,
        signature=signature,
        header=github.SIGNATURE_HEADER,
        cache=secrets_cache,
    )

    if event in github.HANDLED_EVENTS:
        # What the worker will store is checked now: refused here, not lost there.
        github.parse_push(payload)
        status = EventStatus.PENDING
    elif event in github.PULLED_EVENTS and pulls.wanted(
        session, repository_id=repository_id, provider=Provider.GITHUB, event=event, payload=payload
    ):
        pulls.check_payload(Provider.GITHUB, payload)
        status = EventStatus.PENDING
    elif changes.is_pull_request(Provider.GITHUB, event) and changes.wanted_pull_request(
        Provider.GITHUB, payload
    ):
        changes.parse_pull_request(Provider.GITHUB, payload)
        status = EventStatus.PENDING
    elif event in github.RECORDED_EVENTS:
        status = EventStatus.IGNORED
    else:
        return Receipt(ReceiptStatus.IGNORED)
    return _store(
        session,
        celery,
        repository_id=repository_id,
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
    secrets_cache: SecretCache | None = None,
    signature: str | None = None,
    webhook_id: str | None = None,
    timestamp: str | None = None,
) -> Receipt:
    """Check a GitLab delivery and store it; raises an IngestError for a
    delivery that must be refused, before anything is written.

    GitLab sends the webhook's secret token itself, not a signature: riskrank
    keeps only a salted hash of it (hash_secret), and compares the token's
    hash with it in constant time. With a signing token set, the delivery's
    webhook-signature is checked instead (_verified_gitlab). Push Hooks and
    Merge Request Hooks bringing a new head are stored and queued, finished
    Pipeline Hooks too when results are pulled, Tag Push Hooks stored for the
    record, every other event acknowledged and dropped (gitlab.HANDLED_EVENTS,
    ...)."""
    event = _required(event, gitlab.EVENT_HEADER)
    if not token and not signature:
        raise BadSignature(
            f"{gitlab.TOKEN_HEADER} header is required: set the GitLab webhook's "
            "secret token to the repository's webhook secret (or its signing token: "
            f"`riskrank repo api --signing-token`, sent as {gitlab.SIGNATURE_HEADER})"
        )
    if signature:
        webhook_id = _required(webhook_id, gitlab.WEBHOOK_ID_HEADER)
        timestamp = _required(timestamp, gitlab.TIMESTAMP_HEADER)
        check_timestamp(timestamp, now=time.time(), header=gitlab.TIMESTAMP_HEADER)
    # GitLab sends JSON only, whatever a replaying client declares.
    payload = decode_json_body(body, None)
    if event in gitlab.HANDLED_EVENTS:
        status: EventStatus | None = EventStatus.PENDING
    elif changes.is_pull_request(Provider.GITLAB, event) and changes.wanted_pull_request(
        Provider.GITLAB, payload
    ):
        status = EventStatus.PENDING
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
    repository_id = _verified_gitlab(
        session,
        full_name=path,
        body=body,
        credentials=GitlabCredentials(token, signature, webhook_id, timestamp),
        cache=secrets_cache,
    )
    if event in gitlab.PULLED_EVENTS and pulls.wanted(
        session, repository_id=repository_id, provider=Provider.GITLAB, event=event, payload=payload
    ):
        pulls.check_payload(Provider.GITLAB, payload)
        status = EventStatus.PENDING
    elif status is None:
        return Receipt(ReceiptStatus.IGNORED)
    elif changes.is_pull_request(Provider.GITLAB, event):
        changes.parse_pull_request(Provider.GITLAB, payload)
    elif status is EventStatus.PENDING:
        gitlab.parse_push(payload)
    return _store(
        session,
        celery,
        repository_id=repository_id,
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
    secrets_cache: SecretCache | None = None,
) -> Receipt:
    """Check a generic CI event (one commit, ingest/generic.py) and store it;
    raises an IngestError for an event that must be refused, before anything
    is written. The body is checked in full here, so that its sender hears
    what is wrong with it."""
    signature = _required(signature, generic.SIGNATURE_HEADER)
    # Always JSON: `curl -d` declares a form whatever it sends.
    payload = decode_json_body(body, None)
    full_name = generic.repository_name(payload)
    repository_id = _verified_hmac(
        session,
        provider=Provider.GENERIC,
        full_name=full_name,
        body=body,
        signature=signature,
        header=generic.SIGNATURE_HEADER,
        cache=secrets_cache,
    )
    commit = generic.parse_commit(payload)
    delivery = generic.delivery_id(header=delivery_id, commit=commit, body=body)
    return _store(
        session,
        celery,
        repository_id=repository_id,
        provider=Provider.GENERIC,
        # A generic sender picks its own ids (a build number, say), which
        # other repositories' senders may pick too: they are kept apart by
        # the repository. Without an id, the same body is the same event.
        delivery_id=f"{repository_id}:{delivery}",
        event=generic.COMMIT,
        payload=payload,
        status=EventStatus.PENDING,
    )
