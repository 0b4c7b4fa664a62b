"""GET/POST /api/v1/repos/{owner}/{name}/plans/{sha}: the plan CI follows.

The contract is in the README ("Plans"). Only bad parameters are errors
(400, besides the token's 401/403/404); anything that goes wrong while
planning answers a `fallback` plan that runs everything."""

from __future__ import annotations

import math
import time
from typing import Annotated, Any, Literal

from celery import Celery
from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from scheduler import commit_ids, limits, metrics
from scheduler.api import openapi
from scheduler.api.deps import (
    RATE_LIMITED,
    UNSTORABLE,
    DatabaseDep,
    SettingsDep,
    authorize,
    read_body,
)
from scheduler.config import Settings
from scheduler.db import Database
from scheduler.errors import ClientError
from scheduler.ingest.errors import Unstorable
from scheduler.ingest.payload import parse_json
from scheduler.services import plans, statuses, tokens, trimming
from scheduler.services.plans import PlanParameterError, PlanRequest

# `owner` may hold slashes: a GitLab project in nested groups (group/sub/name).
router = APIRouter(prefix="/api/v1/repos/{owner:path}/{name}", tags=["plans"])

# Collected test lists travel in the POST body; ids are short, 64 MiB is
# far beyond any suite and still bounded.
MAX_PLAN_BODY = 64 * 1024 * 1024


class PlannedTest(BaseModel):
    test: str = Field(description="The canonical test id.")
    rank: int = Field(description="1 for the first to run in the policy's order.")
    probability: float | None = Field(description="Failure probability (null in a fallback).")
    selected: bool
    reason: str = Field(description="Why it runs or not, for a person.")
    duration: float | None = Field(description="Expected seconds; null unknown.")
    rule: Literal[
        "model",
        "must_run",
        "new",
        "own_file_changed",
        "recently_failed",
        "exploration",
        "escalation",
        "full_run",
        "budget",
    ]


class PlanAnswer(BaseModel):
    plan_id: int | None = Field(description="Null only for a fallback that stored nothing.")
    commit: str
    status: Literal["ready", "heuristic", "fallback", "no_tests"] = Field(
        description="ready: scored by the model; heuristic: by the simple rules (no model "
        "yet); fallback: planning failed, everything runs; no_tests: riskrank knows no test "
        "of the repository and none were sent, the whole suite runs."
    )
    model_version: int | None = Field(description="Null unless status is ready.")
    mode: str
    budget: float | None
    by: str
    shard: str | None
    exploration_rate: float
    full_run: bool = Field(description="A rule (or a fallback) runs everything.")
    full_run_reason: str | None
    run_all: bool = Field(
        description="Run the whole suite, not only the listed tests: riskrank cannot name "
        "them (no test known and none sent), or everything runs (a fallback or a full run) "
        "and no collected list was sent, so a test new to riskrank would be missed."
    )
    total: int = Field(description="Tests in the plan, before sharding.")
    selected: int = Field(description="Selected tests in this shard.")
    duration_selected: float = Field(description="Expected seconds of this shard's selection.")
    duration_dropped: float = Field(description="Expected seconds of the dropped tests.")
    expected_failures_dropped: float = Field(
        description="The expected number of failing tests among the dropped ones: the sum of "
        "their probabilities (calibrated on the repository's recent outcomes)."
    )
    miss_probability: float = Field(
        description="The probability that at least one dropped test fails: 1 - prod(1 - p) "
        "over the dropped tests."
    )
    failures_dropped_bound: int = Field(
        default=0,
        description="The 95% bound on the failing tests among the dropped ones: the "
        "smallest k that their number is at most with probability 0.95, the tests failing "
        "each on its own at their probabilities (the Poisson-binomial law).",
    )
    selected_by: dict[str, int] = Field(
        description="The whole plan's selected tests by what selected them: `budget` (the "
        "rules and the budget), `exploration` (the random sample over the budget), "
        "`escalation` (over the budget, run while trimming is escalated) and `full_run`."
    )
    escalation: str | None = Field(
        description="Why every test over the budget runs for now (the live estimate of what "
        "trimming misses passed what the mode promises); null: trimming as asked."
    )
    expand_after: int | None = Field(
        default=None,
        description="Run the dropped tests too (every test listed with `selected` false) once "
        "this many of the selected tests whose rule is `model`, `must_run`, `new` or "
        "`own_file_changed` failed: the change broke more than the plan foresaw. The "
        "fewest failures less likely than 5% given those tests' probabilities (or how often "
        "the repository's watched tests failed lately, if that says more), and at least the "
        "repository's `expand_after` (default 2). Null: nothing to expand (nothing dropped, "
        "expansion off, a shard's answer, or a fallback).",
    )
    changes_note: str | None = Field(
        default=None,
        description="Why the commit's changed files may be incomplete: riskrank gave up "
        "asking the provider for them and scored the plan with what the webhook listed, e.g. "
        "`changed files unknown (GET …: HTTP 502 after 5 attempts); scored with the push's "
        "own list`. Null: nothing to say (and always for a fallback).",
    )
    message: str | None
    tests: list[PlannedTest] = Field(
        description="Without a shard: every test, the selected ones first in run order, then "
        "the dropped ones. With a shard: the shard's selected tests in run order."
    )


class PlanBody(BaseModel):
    """The POST body: the GET parameters, with room for long test lists."""

    mode: Literal["order", "time", "fraction", "confidence"] | None = None
    budget: float | None = None
    by: Literal["tests", "duration"] | None = None
    shard: str | None = Field(default=None, examples=["1/4"])
    branch: str | None = None
    tests: list[str] | None = Field(default=None, max_length=limits.PLAN_TESTS)


RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": PlanAnswer, "description": "The plan (ready, heuristic or fallback)"},
    400: {"description": "Bad parameters: the message says which"},
    401: {"description": "No valid token"},
    403: {"description": "The token lacks plans:read"},
    404: {
        "description": "The repository is not registered, or the token is not for it "
        "(one answer for both)"
    },
    422: {"description": UNSTORABLE},
    429: RATE_LIMITED,
}

BODY_EXAMPLE = {
    "mode": "fraction",
    "budget": 0.3,
    "by": "tests",
    "shard": "1/4",
    "branch": "main",
    "tests": ["tests/test_io.py::test_eof", "tests/test_io.py::test_open"],
}


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PlanParameterError(f"{what} must be a number, not {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise PlanParameterError(f"{what} must be a number, not {value!r}") from None
    except OverflowError:
        # An integer of hundreds of digits has no float: out of range (422).
        raise Unstorable(f"{what}: must be a finite number") from None
    if not math.isfinite(number):
        raise Unstorable(f"{what}: must be a finite number, not {str(value)[:20]!r}")
    return number


def _text(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return limits.optional_text(value, what, max_chars=limits.NAME_CHARS)
    raise PlanParameterError(f"{what} must be a string, not {value!r}")


def _tests(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PlanParameterError("tests must be a list of test id strings")
    limits.count(value, "tests", limits.PLAN_TESTS)
    try:
        # One pass over all the ids; the slow one only to name the bad id
        # (or one that may be past TEST_ID_BYTES: no test riskrank knows).
        limits.text("".join(value), "tests")
        if value and max(map(len, value)) * 4 <= limits.TEST_ID_BYTES:
            return value
    except ClientError:
        pass
    for number, item in enumerate(value):
        limits.text(item, f"tests[{number}]", max_bytes=limits.TEST_ID_BYTES)
    return value


def _request(fields: dict[str, Any]) -> PlanRequest:
    unknown = set(fields) - {"mode", "budget", "by", "shard", "branch", "tests"}
    if unknown:
        raise PlanParameterError(f"unknown parameters: {', '.join(sorted(unknown))}")
    return PlanRequest(
        mode=_text(fields.get("mode"), "mode"),
        budget=_number(fields.get("budget"), "budget"),
        by=_text(fields.get("by"), "by"),
        shard=_text(fields.get("shard"), "shard"),
        branch=_text(fields.get("branch"), "branch"),
        tests=_tests(fields.get("tests")),
    )


def _authorize(
    database: Database, request: Request, *, owner: str, name: str
) -> plans.RepositoryRef:
    with database.session() as session:
        repository = authorize(
            session, request, full_name=f"{owner}/{name}", scope=tokens.Scope.PLANS_READ
        )
        return plans.RepositoryRef(
            id=repository.id,
            default_branch=repository.default_branch,
            settings=dict(repository.settings or {}),
            escalation=trimming.escalation_of(repository),
            expansion_share=trimming.expansion_share_of(repository),
            watched_failure_rate=trimming.watched_failure_rate_of(repository),
            expansion_catch=trimming.expansion_catch_of(repository),
            confidence_scale=trimming.confidence_scale_of(repository),
        )


def _after_decision(database: Database, celery: Celery | None, pending: Any) -> None:
    """Record the decision, then queue the plan's commit status if the
    repository posts them (the first time CI follows the plan)."""
    plans.write_decision(database, pending)
    if celery is not None:
        statuses.queue_for_plan(database, celery, pending.plan_id)


def _answer(
    database: Database,
    settings: Settings,
    *,
    repository: plans.RepositoryRef,
    sha: str,
    fields: dict[str, Any],
    celery: Celery | None = None,
) -> tuple[bytes, BackgroundTask | None]:
    """The answer's body, and the decision to record once it is sent."""
    started = time.perf_counter()
    answer = plans.plan_answer(
        database,
        repository=repository,
        sha=plans.check_sha(sha),
        request=_request(fields),
        defaults=plans.PlanDefaults(
            wait_seconds=settings.plan_wait_seconds,
            exploration_rate=settings.plan_exploration_rate,
            recent_failures=settings.plan_recent_failures,
            full_run_every=settings.plan_full_run_every,
            expand_after=settings.plan_expand_after,
        ),
        defer=True,
    )
    body = answer.to_json()
    metrics.PLAN_SECONDS.observe(time.perf_counter() - started)
    metrics.PLANS_SERVED.labels(status=answer.head["status"]).inc()
    pending = answer.pending
    task = BackgroundTask(_after_decision, database, celery, pending) if pending else None
    return body, task


@router.get(
    "/plans/{sha}",
    responses=RESPONSES,
    response_class=Response,
    dependencies=openapi.TOKEN_AUTH,
)
async def get_plan(
    owner: str,
    name: str,
    sha: Annotated[
        str,
        Path(
            description="The commit's full id (40 or 64 hex digits).",
            json_schema_extra={"pattern": commit_ids.PATTERN},
        ),
    ],
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    mode: Annotated[
        str | None,
        Query(description="order (default) | time | fraction | confidence"),
    ] = None,
    budget: Annotated[
        str | None,
        Query(
            description="time: seconds; fraction: share 0..1 of the tests (or of the expected "
            "duration with by=duration); confidence: share 0..1 of the expected failures kept"
        ),
    ] = None,
    by: Annotated[
        str | None,
        Query(
            description="what the budget counts, and so the order: tests (default; by "
            "probability) | duration (probability per second of expected runtime)"
        ),
    ] = None,
    shard: Annotated[str | None, Query(description="i/n, 1-based", examples=["1/4"])] = None,
    branch: Annotated[str | None, Query(description="The branch being built.")] = None,
    tests: Annotated[
        list[str] | None,
        Query(description="The test ids the runner collected: the plan covers exactly them."),
    ] = None,
) -> Response:
    """The plan for a commit: the riskiest tests first (per second with a
    time budget or `by=duration`), which of them to run under the budget,
    and why. Scored on the spot if need be; a `fallback` plan (everything
    runs) when planning fails."""
    fields = {
        "mode": mode,
        "budget": budget,
        "by": by,
        "shard": shard,
        "branch": branch,
        "tests": tests,
    }

    def plan() -> tuple[bytes, BackgroundTask | None]:
        repository = _authorize(database, request, owner=owner, name=name)
        return _answer(
            database,
            settings,
            repository=repository,
            sha=sha,
            fields=fields,
            celery=getattr(request.app.state, "celery", None),
        )

    body, task = await run_in_threadpool(plan)
    return Response(body, media_type="application/json", background=task)


@router.post(
    "/plans/{sha}",
    responses=RESPONSES,
    response_class=Response,
    dependencies=openapi.TOKEN_AUTH,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": PlanBody.model_json_schema(),
                    "example": BODY_EXAMPLE,
                }
            }
        }
    },
)
async def post_plan(
    owner: str,
    name: str,
    sha: Annotated[
        str,
        Path(
            description="The commit's full id (40 or 64 hex digits).",
            json_schema_extra={"pattern": commit_ids.PATTERN},
        ),
    ],
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
) -> Response:
    """The same as GET, with the parameters in a JSON body (for long test lists)."""

    # Nobody sends a large body without a token.
    repository = await run_in_threadpool(_authorize, database, request, owner=owner, name=name)
    raw = await read_body(request, limit=MAX_PLAN_BODY)
    # Nesting is bounded while the body is read (422 past the parser's limit
    # or limits.JSON_DEPTH); the strings are checked field by field.
    fields = parse_json(raw) if raw.strip() else {}
    if not isinstance(fields, dict):
        raise PlanParameterError("the body must be a JSON object")
    limits.json_document(fields, strings=False)
    body, task = await run_in_threadpool(
        _answer,
        database,
        settings,
        repository=repository,
        sha=sha,
        fields=fields,
        celery=getattr(request.app.state, "celery", None),
    )
    return Response(body, media_type="application/json", background=task)
