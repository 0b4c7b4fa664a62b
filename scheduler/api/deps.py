"""What every router needs from the application: its database and broker.

Handlers open their unit of work with `database.session()` themselves, inside
the handler, so the commit happens before the response is sent (a dependency
with `yield` may close after it)."""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from scheduler.api.ratelimit import RateLimiter
from scheduler.config import Settings
from scheduler.db import Database
from scheduler.ingest.errors import BodyTooLarge, MalformedPayload
from scheduler.models import Repository
from scheduler.services import tokens

# The three below are coroutines although they do no I/O: FastAPI runs a
# plain function dependency in its thread pool, three thread hand-offs per
# request (a quarter of a webhook's CPU time) to read an attribute.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_celery(request: Request) -> Celery:
    celery: Celery = request.app.state.celery
    return celery


def authorize(
    session: Session, request: Request, *, full_name: str, scope: tokens.Scope
) -> Repository:
    """The repository a token-authenticated request acts on: the token is
    checked first (401), then counted against its rate limit (429, when
    limits are on), and only then is the repository looked up (404 alike
    for an unknown one and another's, 403 for a missing scope)."""
    record = tokens.authenticate(session, authorization=request.headers.get("authorization"))
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is not None:
        limiter.hit(record.id)
    return tokens.authorize_token(session, record=record, full_name=full_name, scope=scope)


async def read_body(request: Request, *, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes
    (whether or not the client declared its length)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise MalformedPayload("Content-Length is not a number") from None
        if length > limit:
            raise BodyTooLarge(f"body of {length} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# The 422 every router documents (scheduler.limits says what fits).
UNSTORABLE = (
    "A value riskrank cannot store (too long, a NUL, out of range, nested too deep): "
    "the message names the field, and nothing was stored"
)

RATE_LIMITED = {
    "description": "The token is over its rate limit (only when limits are set): "
    "Retry-After says when to try again",
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}},
}

SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
