"""Liveness, readiness and the Prometheus endpoint."""

from __future__ import annotations

import asyncio
import logging
import math

from celery import Celery
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text

from scheduler import metrics
from scheduler.api import openapi
from scheduler.api.deps import CeleryDep, DatabaseDep, SettingsDep
from scheduler.db import Database

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (it checks nothing else). Served on the event loop,
    not the thread pool: requests stuck on a slow database cannot starve it."""
    return {"status": "ok"}


def _check_database(database: Database) -> str | None:
    try:
        with database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def _check_broker(celery: Celery, timeout: float) -> str | None:
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=max(1, math.ceil(timeout)))
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


@router.get("/readyz", responses={503: {"description": "The database or the broker is down"}})
async def readyz(settings: SettingsDep, database: DatabaseDep, celery: CeleryDep) -> JSONResponse:
    """Ready to take work: the database and the broker both answer. Each
    check says only ok or unavailable: the reason (the driver's error, with
    its host, port and database) goes to the log, not to an unauthenticated
    caller."""
    database_problem, broker_problem = await asyncio.gather(
        run_in_threadpool(_check_database, database),
        run_in_threadpool(_check_broker, celery, settings.publish_timeout_seconds),
    )
    problems = {"database": database_problem, "broker": broker_problem}
    for name, problem in problems.items():
        if problem is not None:
            log.warning("readyz: the %s is unavailable: %s", name, problem)
    checks = {
        name: ("ok" if problem is None else "unavailable") for name, problem in problems.items()
    }
    ready = all(problem is None for problem in problems.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
        headers={} if ready else {"Retry-After": str(settings.retry_after_seconds)},
    )


@router.get("/metrics", response_class=PlainTextResponse, responses=openapi.METRICS_RESPONSES)
def prometheus_metrics(request: Request) -> Response:
    """Prometheus text exposition: the events of riskrank's processes that
    share this one's directory, summed, and the figures of the database."""
    return Response(metrics.render(request.app.state.figures), media_type=metrics.CONTENT_TYPE)
