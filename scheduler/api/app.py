"""The FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc
from starlette.types import ASGIApp, Receive, Scope, Send

from scheduler import __version__
from scheduler.api import health, openapi, plans, runs, webhooks
from scheduler.api.ratelimit import limiter_for
from scheduler.config import Settings, get_settings
from scheduler.db import Database
from scheduler.errors import ClientError
from scheduler.queue import create_celery

log = logging.getLogger(__name__)

# What a database that refuses, does not answer in time, or is locked past
# the API's wait raises (a pool timeout is sqlalchemy.exc.TimeoutError): the
# request may succeed later, so it is a 503, not a 500.
DATABASE_UNAVAILABLE = (exc.OperationalError, exc.TimeoutError)


async def _client_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ClientError)
    return JSONResponse(
        {"detail": error.message}, status_code=error.status_code, headers=error.headers or None
    )


def _database_unavailable(
    retry_after: int,
) -> Callable[[Request, Exception], Coroutine[Any, Any, JSONResponse]]:
    async def handler(request: Request, error: Exception) -> JSONResponse:
        # The driver's message names the host, the port and the database:
        # for the log only, never for the caller.
        log.warning(
            "%s %s: the database is unavailable: %s: %s",
            request.method,
            request.url.path,
            type(error).__name__,
            error,
        )
        return JSONResponse(
            {"detail": "the database is unavailable; try again later"},
            status_code=503,
            headers={"Retry-After": str(retry_after)},
        )

    return handler


def _nul_in_url(scope: Scope) -> str | None:
    """The part of the request's URL that holds a NUL (no column can store
    one, and PostgreSQL refuses it even in a lookup), or None."""
    if "\x00" in scope.get("path", ""):
        return "path"
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return f"query parameter {name.replace(chr(0), '')!r}"
    return None


class RefuseNulInUrl:
    """400 for a URL with a NUL in its path or query, before any handler."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        where = _nul_in_url(scope) if scope["type"] == "http" else None
        if where is None:
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {"detail": f"{where}: must not contain a NUL character"}, status_code=400
        )
        await response(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    database = Database.from_url(settings.database_url, settings.api_database_timeouts())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        database.dispose()

    app = FastAPI(title="riskrank", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.database = database
    app.state.celery = create_celery(settings)
    app.state.rate_limiter = limiter_for(settings)
    app.add_exception_handler(ClientError, _client_error)
    unavailable = _database_unavailable(settings.retry_after_seconds)
    for error in DATABASE_UNAVAILABLE:
        app.add_exception_handler(error, unavailable)
    app.add_middleware(RefuseNulInUrl)
    app.include_router(health.router)
    app.include_router(webhooks.router)
    app.include_router(runs.router)
    app.include_router(plans.router)
    openapi.install(app)
    return app
