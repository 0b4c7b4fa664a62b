"""The JSON form of a run's outcomes (the results API, the pytest plugin,
history JSONL lines), validated with pydantic."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scheduler import commit_ids, limits
from scheduler.ingest.errors import MalformedPayload, Unstorable
from scheduler.ingest.payload import parse_json
from scheduler.ingest.results import CaseResult
from scheduler.ingest.testid import canonical_test_id, normalise_path
from scheduler.models.enums import Outcome

MAX_RESULTS = limits.RESULTS


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

    @field_validator("test")
    @classmethod
    def _named(cls, value: str) -> str:
        # A name of spaces only has no canonical id (testid): refused here,
        # not a ValueError (a 500) when the id is made.
        if not value.split():
            raise ValueError("a test id needs a name, not only whitespace")
        return value

    @field_validator("outcome", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class RunIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    commit: str | None = Field(
        default=None,
        max_length=limits.SHA_CHARS,
        json_schema_extra={"pattern": commit_ids.PATTERN},
    )
    branch: str | None = Field(default=None, max_length=limits.NAME_CHARS)
    run_key: str | None = Field(default=None, max_length=limits.NAME_CHARS)
    plan_id: int | None = Field(default=None, ge=1, le=limits.INT64_MAX)
    source: Literal["json", "pytest"] = "json"
    results: list[ResultIn] = Field(max_length=MAX_RESULTS)


def _where(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "body"


def _explain(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    more = f" (and {error.error_count() - 1} more problems)" if error.error_count() > 1 else ""
    return f"{_where(tuple(first['loc']))}: {first['msg']}{more}"


def parse_run_json(data: bytes | str) -> RunIn:
    """The report, or MalformedPayload (400) for one that is not results
    JSON; Unstorable (422) when every problem is a bound (a string too long,
    too many results, a number out of range, nested too deep, a lone
    surrogate), naming the first place (`results[1].test`)."""
    try:
        return RunIn.model_validate_json(data)
    except ValidationError as error:
        kinds = [problem["type"] for problem in error.errors(include_url=False)]
        if kinds == ["json_invalid"]:
            try:
                parse_json(data, "")  # the refusal, naming the place where it can
            except Unstorable:
                raise
            except MalformedPayload as syntax:
                raise MalformedPayload(f"invalid results JSON: {syntax.message}") from None
        refusal = Unstorable if limits.past_bounds(kinds) else MalformedPayload
        raise refusal(f"invalid results JSON: {_explain(error)}") from None


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
