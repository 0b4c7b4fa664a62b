"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from scheduler import __version__
from scheduler.api import health, plans, runs, webhooks
from scheduler.config import Settings, get_settings
from scheduler.db import Database
from scheduler.errors import ClientError
from scheduler.queue import create_celery


async def _client_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ClientError)
    return JSONResponse({"detail": error.message}, status_code=error.status_code)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    database = Database.from_url(settings.database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        database.dispose()

    app = FastAPI(title="riskrank", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.database = database
    app.state.celery = create_celery(settings)
    app.add_exception_handler(ClientError, _client_error)
    app.include_router(health.router)
    app.include_router(webhooks.router)
    app.include_router(runs.router)
    app.include_router(plans.router)
    return app
