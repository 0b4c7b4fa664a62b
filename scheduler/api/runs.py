"""POST /api/v1/repos/{owner}/{name}/runs: a CI job's test outcomes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from scheduler import commit_ids, metrics
from scheduler.api import openapi
from scheduler.api.deps import (
    RATE_LIMITED,
    UNSTORABLE,
    CeleryDep,
    DatabaseDep,
    SettingsDep,
    authorize,
    read_body,
)
from scheduler.services import tokens
from scheduler.services.results import RunParameters, RunReceipt, receive_run

# `owner` may hold slashes: a GitLab project in nested groups (group/sub/name).
router = APIRouter(prefix="/api/v1/repos/{owner:path}/{name}", tags=["results"])

REPORT_EXAMPLE = {
    "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8",
    "branch": "main",
    "run_key": "build-1234",
    "results": [
        {"test": "tests/test_io.py::TestReader::test_eof", "outcome": "failed", "duration": 0.12},
        {"test": "tests/test_io.py::test_open", "outcome": "passed", "duration": 0.03},
    ],
}


@router.post(
    "/runs",
    status_code=202,
    dependencies=openapi.TOKEN_AUTH,
    responses={
        200: {"description": "This very report was already received for the commit"},
        400: {
            "description": "Not a JUnit XML report or results JSON, or no full commit id "
            "(40 or 64 hex digits)"
        },
        401: {"description": "No valid token"},
        403: {"description": "The token lacks results:write"},
        404: {
            "description": "The repository is not registered, or the token is not for it "
            "(one answer for both)"
        },
        413: {"description": "The report (once inflated) is over the limit"},
        422: {"description": UNSTORABLE},
        429: RATE_LIMITED,
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "application/xml": {"schema": {"type": "string"}},
                "application/json": {**openapi.RESULTS_BODY, "example": REPORT_EXAMPLE},
            }
        }
    },
)
async def post_run(
    owner: str,
    name: str,
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    celery: CeleryDep,
    commit: Annotated[
        str | None,
        Query(
            description="The commit the tests ran on: its full id (40 or 64 hex digits).",
            json_schema_extra={"pattern": commit_ids.PATTERN},
        ),
    ] = None,
    branch: Annotated[str | None, Query()] = None,
    run_key: Annotated[
        str | None, Query(description="Shared by the reports of one build (shards, matrix).")
    ] = None,
    plan_id: Annotated[int | None, Query(description="The plan the run followed.")] = None,
) -> JSONResponse:
    """Store a JUnit XML report (`application/xml`, gzip allowed) or results
    JSON for a commit; a worker folds it into the history."""

    def authorized() -> tuple[int, str]:
        with database.session() as session:
            repository = authorize(
                session, request, full_name=f"{owner}/{name}", scope=tokens.Scope.RESULTS_WRITE
            )
            return repository.id, repository.slug

    # Who is asking comes first: nobody uploads a large body without a token.
    repository_id, slug = await run_in_threadpool(authorized)
    body = await read_body(request, limit=settings.max_body_bytes)

    def receive() -> RunReceipt:
        with database.session() as session:
            return receive_run(
                session,
                celery,
                repository_id=repository_id,
                content_type=request.headers.get("content-type"),
                content_encoding=request.headers.get("content-encoding"),
                body=body,
                parameters=RunParameters(
                    commit=commit, branch=branch, run_key=run_key, plan_id=plan_id
                ),
                max_bytes=settings.max_body_bytes,
            )

    receipt = await run_in_threadpool(receive)
    status = "queued" if receipt.created else "duplicate"
    metrics.RUNS_RECEIVED.labels(repository=slug, result=status).inc()
    return JSONResponse(
        {
            "status": status,
            "run_id": receipt.run_id,
            "tests": receipt.tests,
        },
        status_code=202 if receipt.created else 200,
    )
