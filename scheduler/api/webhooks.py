"""Webhook endpoints: verify, record once, queue, answer 202."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
from celery import Celery
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from scheduler import metrics
from scheduler.api import openapi
from scheduler.api.deps import UNSTORABLE, read_body
from scheduler.config import Settings
from scheduler.db import Database
from scheduler.errors import ClientError
from scheduler.ingest import generic, github, gitlab
from scheduler.models import Provider
from scheduler.services.webhooks import (
    Receipt,
    ReceiptStatus,
    SecretCache,
    receive_generic,
    receive_github,
    receive_gitlab,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

# A redelivery is acknowledged with 200: nothing new was accepted.
_STATUS_CODES = {ReceiptStatus.DUPLICATE: 200}

_REFUSALS: dict[int | str, dict[str, Any]] = {
    200: {"description": "A redelivery of an event already stored"},
    400: {"description": "A header is missing or the body is not what the endpoint reads"},
    401: {
        "description": "The signature (GitLab: the token) does not verify, the repository "
        "is not registered or has no webhook secret: one answer for all, so that nobody "
        "without the secret learns which repositories exist"
    },
    413: {"description": "The body is over the limit"},
    422: {"description": UNSTORABLE},
}


def _database_turns(request: Request, settings: Settings) -> anyio.CapacityLimiter:
    """The app's bound on webhooks at the database at once: the pool's
    size. Past it a delivery waits on the event loop for its turn rather
    than open (and close) a connection of its own, which costs more than
    the delivery's own statements."""
    state = request.app.state
    limiter: anyio.CapacityLimiter | None = getattr(state, "webhook_turns", None)
    if limiter is None:
        limiter = state.webhook_turns = anyio.CapacityLimiter(settings.api_database_pool_size)
    return limiter


def _state(request: Request) -> tuple[Settings, Database, Celery, SecretCache | None]:
    """What a delivery needs from the app, read here rather than through
    FastAPI dependencies: solving three of them cost about 5% of a
    webhook's CPU time."""
    state = request.app.state
    cache: SecretCache | None = getattr(state, "webhook_secrets", None)
    return state.settings, state.database, state.celery, cache


async def _receive(
    provider: Provider,
    request: Request,
    settings: Settings,
    database: Database,
    receive: Callable[[Session, bytes], Receipt],
) -> JSONResponse:
    """Read the body, run `receive` in its own unit of work off the event
    loop (at most the pool's size at once), count the outcome, and answer it."""
    started = time.perf_counter()
    try:
        body = await read_body(request, limit=settings.max_body_bytes)

        def in_session() -> Receipt:
            # A delivery writes one row, once (receive_* write nothing else).
            with database.statement_session() as session:
                return receive(session, body)

        receipt = await anyio.to_thread.run_sync(
            in_session, limiter=_database_turns(request, settings)
        )
    except ClientError:
        metrics.WEBHOOKS_RECEIVED.labels(provider=provider.value, result="rejected").inc()
        raise
    metrics.WEBHOOKS_RECEIVED.labels(provider=provider.value, result=receipt.status.value).inc()
    metrics.WEBHOOK_SECONDS.labels(provider=provider.value).observe(time.perf_counter() - started)
    return JSONResponse(
        {"status": receipt.status.value, "event_id": receipt.event_id},
        status_code=_STATUS_CODES.get(receipt.status, 202),
    )


@router.post(
    "/github",
    status_code=202,
    responses=_REFUSALS,
    dependencies=openapi.GITHUB_AUTH,
    openapi_extra={
        "parameters": openapi.GITHUB_PARAMETERS,
        "requestBody": openapi.GITHUB_BODY,
    },
)
async def github_webhook(request: Request) -> JSONResponse:
    """A GitHub delivery: pushes and pull requests (opened, synchronize,
    reopened) are processed, pings recorded, completed
    workflow runs processed when the repository has a provider token (their
    test reports are pulled from the run's artifacts); other events are
    acknowledged and dropped."""
    headers = request.headers
    settings, database, celery, secrets = _state(request)
    return await _receive(
        Provider.GITHUB,
        request,
        settings,
        database,
        lambda session, body: receive_github(
            session,
            celery,
            event=headers.get(github.EVENT_HEADER),
            delivery_id=headers.get(github.DELIVERY_HEADER),
            signature=headers.get(github.SIGNATURE_HEADER),
            content_type=headers.get("content-type"),
            body=body,
            secrets_cache=secrets,
        ),
    )


@router.post(
    "/gitlab",
    status_code=202,
    responses=_REFUSALS,
    dependencies=openapi.GITLAB_AUTH,
    openapi_extra={
        "parameters": openapi.GITLAB_PARAMETERS,
        "requestBody": openapi.GITLAB_BODY,
    },
)
async def gitlab_webhook(request: Request) -> JSONResponse:
    """A GitLab delivery, authenticated by its secret token (X-Gitlab-Token)
    and, when the repository has a signing token, by its signature
    (webhook-signature, webhook-id, webhook-timestamp). Push Hooks and Merge
    Request Hooks bringing a new head are processed, Tag Push Hooks recorded, finished Pipeline
    Hooks processed when the project has a provider token (the pipeline's
    test report is pulled, else its jobs' JUnit artifacts), other events
    acknowledged and dropped."""
    headers = request.headers
    settings, database, celery, secrets = _state(request)
    return await _receive(
        Provider.GITLAB,
        request,
        settings,
        database,
        lambda session, body: receive_gitlab(
            session,
            celery,
            event=headers.get(gitlab.EVENT_HEADER),
            token=headers.get(gitlab.TOKEN_HEADER),
            idempotency_key=headers.get(gitlab.IDEMPOTENCY_HEADER),
            event_uuid=headers.get(gitlab.EVENT_UUID_HEADER),
            body=body,
            secrets_cache=secrets,
            signature=headers.get(gitlab.SIGNATURE_HEADER),
            webhook_id=headers.get(gitlab.WEBHOOK_ID_HEADER),
            timestamp=headers.get(gitlab.TIMESTAMP_HEADER),
        ),
    )


@router.post(
    "/generic",
    status_code=202,
    responses=_REFUSALS,
    dependencies=openapi.GENERIC_AUTH,
    openapi_extra={
        "parameters": openapi.GENERIC_PARAMETERS,
        "requestBody": openapi.GENERIC_BODY,
    },
)
async def generic_webhook(request: Request) -> JSONResponse:
    """One commit from any other CI, in riskrank's own JSON body, signed with
    X-Riskrank-Signature-256 (the README shows the body and how to sign it)."""
    headers = request.headers
    settings, database, celery, secrets = _state(request)
    return await _receive(
        Provider.GENERIC,
        request,
        settings,
        database,
        lambda session, body: receive_generic(
            session,
            celery,
            signature=headers.get(generic.SIGNATURE_HEADER),
            delivery_id=headers.get(generic.DELIVERY_HEADER),
            body=body,
            secrets_cache=secrets,
        ),
    )
