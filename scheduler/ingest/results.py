"""Test outcomes in riskrank's own terms, whatever report they came from."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scheduler import limits
from scheduler.models.enums import Outcome


@dataclass(frozen=True)
class CaseResult:
    """One attempt of one test.

    `attempt` counts from 1 in the order the report lists the attempts of the
    same test; the highest attempt is the test's final outcome in the report."""

    test: str  # the canonical test id (scheduler.ingest.testid)
    outcome: Outcome
    duration: float | None = None  # seconds; None when the report does not say
    attempt: int = 1
    file: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class ReportCounts:
    """What a report says, per distinct test, by its final attempt."""

    tests: int
    passed: int
    failures: int
    errors: int
    skipped: int
    reruns: int  # attempts beyond the first, over all tests


def final_results(results: Iterable[CaseResult]) -> dict[str, CaseResult]:
    """Each test's final attempt."""
    final: dict[str, CaseResult] = {}
    for result in results:
        current = final.get(result.test)
        if current is None or result.attempt >= current.attempt:
            final[result.test] = result
    return final


def count_results(results: Iterable[CaseResult]) -> ReportCounts:
    results = list(results)
    final = final_results(results).values()
    by_outcome = {outcome: 0 for outcome in Outcome}
    for result in final:
        by_outcome[result.outcome] += 1
    return ReportCounts(
        tests=len(final),
        passed=by_outcome[Outcome.PASSED],
        failures=by_outcome[Outcome.FAILED],
        errors=by_outcome[Outcome.ERROR],
        skipped=by_outcome[Outcome.SKIPPED],
        reruns=len(results) - len(final),
    )


def storable_results(results: Sequence[CaseResult], field: str) -> Sequence[CaseResult]:
    """`results` if the database can hold every one of them, else
    Unstorable (422) naming the first that it cannot (`field[i].test`):
    the API refuses such a report whole, so that no result of it is lost
    in the worker. More than limits.RESULTS results are refused too."""
    limits.count(results, field, limits.RESULTS)
    for number, result in enumerate(results):
        where = f"{field}[{number}]"
        limits.text(result.test, f"{where}.test", max_bytes=limits.TEST_ID_BYTES)
        limits.optional_text(result.file, f"{where}.file")
        limits.optional_text(result.message, f"{where}.message")
    return results
