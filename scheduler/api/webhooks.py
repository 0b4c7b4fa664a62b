"""Webhook endpoints: verify, record once, queue, answer 202."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from scheduler import metrics
from scheduler.api.deps import CeleryDep, DatabaseDep, SettingsDep, read_body
from scheduler.errors import ClientError
from scheduler.ingest import github
from scheduler.services.webhooks import Receipt, ReceiptStatus, receive_github

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

# A redelivery is acknowledged with 200: nothing new was accepted.
_STATUS_CODES = {ReceiptStatus.DUPLICATE: 200}


@router.post(
    "/github",
    status_code=202,
    responses={
        200: {"description": "A redelivery of an event already stored"},
        400: {"description": "A header is missing or the body is not a JSON object"},
        401: {"description": "The signature does not match"},
        403: {"description": "The repository has no webhook secret"},
        404: {"description": "The repository is not registered"},
        413: {"description": "The body is over the limit"},
    },
)
async def github_webhook(
    request: Request, settings: SettingsDep, database: DatabaseDep, celery: CeleryDep
) -> JSONResponse:
    """A GitHub delivery (push and ping; other events are acknowledged and dropped)."""
    started = time.perf_counter()
    try:
        body = await read_body(request, limit=settings.max_body_bytes)

        def receive() -> Receipt:
            with database.session() as session:
                return receive_github(
                    session,
                    celery,
                    event=request.headers.get(github.EVENT_HEADER),
                    delivery_id=request.headers.get(github.DELIVERY_HEADER),
                    signature=request.headers.get(github.SIGNATURE_HEADER),
                    content_type=request.headers.get("content-type"),
                    body=body,
                )

        receipt = await run_in_threadpool(receive)
    except ClientError:
        metrics.WEBHOOKS_RECEIVED.labels(provider="github", result="rejected").inc()
        raise
    metrics.WEBHOOKS_RECEIVED.labels(provider="github", result=receipt.status.value).inc()
    metrics.WEBHOOK_SECONDS.labels(provider="github").observe(time.perf_counter() - started)
    return JSONResponse(
        {"status": receipt.status.value, "event_id": receipt.event_id},
        status_code=_STATUS_CODES.get(receipt.status, 202),
    )
