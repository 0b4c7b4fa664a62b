"""The JSON form of a run's outcomes (the results API, the pytest plugin,
history JSONL lines), validated with pydantic."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scheduler import limits
from scheduler.ingest.errors import MalformedPayload
from scheduler.ingest.results import CaseResult
from scheduler.ingest.testid import canonical_test_id, normalise_path
from scheduler.models.enums import Outcome

MAX_RESULTS = 1_000_000


class ResultIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # Its length is checked in UTF-8 bytes once canonical
    # (scheduler.ingest.results.storable_results).
    test: str = Field(min_length=1)
    outcome: Outcome
    duration: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    attempt: int = Field(default=1, ge=1, le=1000)
    file: str | None = Field(default=None, max_length=4000)
    message: str | None = None

    @field_validator("outcome", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class RunIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    commit: str | None = Field(default=None, max_length=limits.SHA_CHARS)
    branch: str | None = Field(default=None, max_length=limits.NAME_CHARS)
    run_key: str | None = Field(default=None, max_length=limits.NAME_CHARS)
    plan_id: int | None = Field(default=None, ge=1, le=limits.INT64_MAX)
    source: Literal["json", "pytest"] = "json"
    results: list[ResultIn] = Field(max_length=MAX_RESULTS)


def _explain(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {error.error_count() - 1} more problems)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def parse_run_json(data: bytes | str) -> RunIn:
    try:
        return RunIn.model_validate_json(data)
    except ValidationError as error:
        raise MalformedPayload(f"invalid results JSON: {_explain(error)}") from None


def case_results(results: list[ResultIn]) -> list[CaseResult]:
    return [
        CaseResult(
            test=canonical_test_id(name=result.test),
            outcome=result.outcome,
            duration=result.duration,
            attempt=result.attempt,
            file=normalise_path(result.file) if result.file else None,
            message=result.message[:1000] if result.message else None,
        )
        for result in results
    ]
