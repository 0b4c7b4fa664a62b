"""Webhook endpoints: verify, record once, queue, answer 202."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from scheduler import metrics
from scheduler.api import openapi
from scheduler.api.deps import UNSTORABLE, CeleryDep, DatabaseDep, SettingsDep, read_body
from scheduler.config import Settings
from scheduler.db import Database
from scheduler.errors import ClientError
from scheduler.ingest import generic, github, gitlab
from scheduler.models import Provider
from scheduler.services.webhooks import (
    Receipt,
    ReceiptStatus,
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


async def _receive(
    provider: Provider,
    request: Request,
    settings: Settings,
    database: Database,
    receive: Callable[[Session, bytes], Receipt],
) -> JSONResponse:
    """Read the body, run `receive` in its own unit of work off the event
    loop, count the outcome, and answer it."""
    started = time.perf_counter()
    try:
        body = await read_body(request, limit=settings.max_body_bytes)

        def in_session() -> Receipt:
            with database.session() as session:
                return receive(session, body)

        receipt = await run_in_threadpool(in_session)
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
async def github_webhook(
    request: Request, settings: SettingsDep, database: DatabaseDep, celery: CeleryDep
) -> JSONResponse:
    """A GitHub delivery (push and ping; other events are acknowledged and dropped)."""
    headers = request.headers
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
async def gitlab_webhook(
    request: Request, settings: SettingsDep, database: DatabaseDep, celery: CeleryDep
) -> JSONResponse:
    """A GitLab delivery, authenticated by its secret token (X-Gitlab-Token).
    Push Hooks are processed, Tag Push Hooks recorded, other events
    acknowledged and dropped."""
    headers = request.headers
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
async def generic_webhook(
    request: Request, settings: SettingsDep, database: DatabaseDep, celery: CeleryDep
) -> JSONResponse:
    """One commit from any other CI, in riskrank's own JSON body, signed with
    X-Riskrank-Signature-256 (the README shows the body and how to sign it)."""
    headers = request.headers
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
        ),
    )
