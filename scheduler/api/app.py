"""The FastAPI application."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduler import __version__, limits, logs, metrics
from scheduler.api import health, openapi, plans, runs, webhooks
from scheduler.api.ratelimit import limiter_for
from scheduler.config import Settings, get_settings
from scheduler.db import Database
from scheduler.errors import ClientError
from scheduler.queue import create_celery
from scheduler.services import figures
from scheduler.services.webhooks import SecretCache

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


def _url_refusal(scope: Scope) -> tuple[int, str] | None:
    """414 for a URL past limits.URL_BYTES; 422 for a NUL in its path or
    query (no column can store one, and PostgreSQL refuses it even in a
    lookup)."""
    query: bytes = scope.get("query_string", b"")
    path: str = scope.get("path", "")
    size = len(scope.get("raw_path") or path.encode("utf-8", "surrogateescape")) + len(query)
    if size > limits.URL_BYTES:
        return 414, (
            f"the URL is {size} bytes: at most {limits.URL_BYTES} are read "
            "(a long list of test ids goes in a plan's POST body)"
        )
    if "\x00" in path:
        return 422, "path: must not contain a NUL character"
    if b"\x00" in query or b"%00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                shown = name.replace("\x00", "")[:100]
                return 422, f"query parameter {shown!r}: must not contain a NUL character"
    return None


def _header_refusal(scope: Scope) -> tuple[int, str] | None:
    """431 for a header past limits.HEADER_BYTES or headers past
    limits.HEADERS_BYTES in all; 422 for a NUL in a header's value."""
    total = 0
    for name, value in scope.get("headers", ()):
        size = len(name) + len(value)
        total += size
        shown = name[:100].decode("latin-1")
        if size > limits.HEADER_BYTES:
            return 431, f"header {shown}: {size} bytes, at most {limits.HEADER_BYTES} are read"
        if b"\x00" in value:
            return 422, f"header {shown}: must not contain a NUL character"
    if total > limits.HEADERS_BYTES:
        return 431, f"the headers are {total} bytes in all: at most {limits.HEADERS_BYTES}"
    return None


class GuardRequestHead:
    """Refuse a request whose head is too large (414 for the URL, 431 for
    the headers) or holds a NUL (422), before any handler, any body read or
    any database work: anyone can send these, signed or not."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = None
        if scope["type"] == "http":
            refusal = _url_refusal(scope) or _header_refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, message = refusal
        await JSONResponse({"detail": message}, status_code=status)(scope, receive, send)


async def _invalid_request(_request: Request, error: Exception) -> JSONResponse:
    """FastAPI's own parameter checks (plan_id=abc), answered by the rule of
    scheduler.errors (a type error 400, a bound 422) in riskrank's shape:
    one message naming each field (`query.plan_id: ...`)."""
    assert isinstance(error, RequestValidationError)
    problems = list(error.errors())
    message = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in problems
    )
    status = 422 if limits.past_bounds(problem["type"] for problem in problems) else 400
    return JSONResponse({"detail": message}, status_code=status)


class CountRequests:
    """riskrank_http_requests_total: every answer, by its route's template
    (bounded: the routes are the app's; a path no route matches is
    "unmatched") and status code; and its log line (scheduler.logs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        code = 500  # an exception that escapes every handler
        started = time.perf_counter()

        async def remember(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, remember)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            metrics.HTTP_REQUESTS.labels(route=route, code=str(code)).inc()
            logs.request_line(
                method=scope.get("method", ""),
                path=scope.get("path", ""),
                route=route,
                status=code,
                seconds=time.perf_counter() - started,
            )


def read_figures(database: Database) -> list[metrics.Figure]:
    """The database's figures for /metrics, in a read-only unit of work."""
    with database.session() as session:
        return figures.read_figures(session)


def freeze_heap() -> None:
    """Move every object alive now (the imported modules, the app) out of
    the garbage collector's sight. An API process holds about 150,000 of
    them, and each full collection walked them all: 45-260 ms with
    everything stopped, three times in six seconds of webhooks, which made
    most of the answers past p99. What the requests allocate is still
    collected as before; what was frozen is freed when nothing refers to
    it, like anything else."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None, *, served: bool = False) -> FastAPI:
    """The app; `served` for a long-running server process (`riskrank
    serve`), whose start-up heap is frozen once the app has started."""
    settings = settings or get_settings()
    database = Database.from_url(settings.database_url, settings.api_database_timeouts())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if served:
            freeze_heap()
        yield
        database.dispose()

    app = FastAPI(title="riskrank", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.database = database
    app.state.celery = create_celery(settings)
    app.state.rate_limiter = limiter_for(settings)
    app.state.webhook_secrets = SecretCache(settings.webhook_secret_cache_seconds)
    app.state.figures = metrics.DatabaseFigures(lambda: read_figures(database))
    app.add_exception_handler(ClientError, _client_error)
    unavailable = _database_unavailable(settings.retry_after_seconds)
    for error in DATABASE_UNAVAILABLE:
        app.add_exception_handler(error, unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_middleware(GuardRequestHead)
    app.add_middleware(CountRequests)
    app.include_router(health.router)
    app.include_router(webhooks.router)
    app.include_router(runs.router)
    app.include_router(plans.router)
    openapi.install(app)
    return app


def create_served_app() -> FastAPI:
    """`riskrank serve`'s factory (each uvicorn process calls it)."""
    return create_app(served=True)
