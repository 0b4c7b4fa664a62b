"""Turning pytest's per-phase reports into one result per attempt of a test.

A test's setup, call and teardown each log a report; riskrank wants one line
per attempt: the worst phase decides the outcome and the durations add up.
pytest-rerunfailures logs the failed phase of an earlier attempt with the
outcome "rerun"; recent versions log that attempt's teardown after it, older
ones nothing more. So an attempt ends at its teardown, and a second setup
report of the same node id starts the next attempt either way."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import pytest

Outcome: TypeAlias = Literal["passed", "failed", "error", "skipped"]

MESSAGE_LIMIT = 1000

# Which outcome wins when two phases of one attempt disagree.
_SEVERITY: dict[Outcome, int] = {"passed": 0, "skipped": 1, "error": 2, "failed": 3}


def test_id(nodeid: str) -> str:
    """riskrank's id of the test pytest calls `nodeid`: the node id with each
    run of whitespace as one space, as the server's canonical ids are (a
    node id is already `file::Class::name[params]`). Uploads and plans both
    use it, so a plan's ids match the collected items."""
    return " ".join(nodeid.split())


@dataclass(frozen=True)
class CaseResult:
    """One attempt of one test, as the riskrank API takes it."""

    test: str
    outcome: Outcome
    duration: float
    attempt: int
    file: str | None
    message: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "outcome": self.outcome,
            "duration": self.duration,
            "attempt": self.attempt,
            "file": self.file,
            "message": self.message,
        }


@dataclass
class _Attempt:
    number: int
    file: str | None
    duration: float = 0.0
    outcome: Outcome | None = None
    message: str | None = None
    failed_subtests: int = 0
    subtest_message: str | None = None
    set_up: bool = False
    closed: bool = False

    def record(self, outcome: Outcome, message: str | None) -> None:
        if self.outcome is None or _SEVERITY[outcome] > _SEVERITY[self.outcome]:
            self.outcome = outcome
            self.message = message

    def result(self, nodeid: str) -> CaseResult | None:
        outcome, message = self.outcome, self.message
        if outcome is None:
            # Never called (--setup-only, --setup-plan): there is nothing to learn from.
            return None
        if outcome == "passed" and self.failed_subtests:
            # pytest 9 fails such a test itself; the older pytest-subtests did not.
            outcome, message = "failed", self.subtest_message
        return CaseResult(
            test=test_id(nodeid),
            outcome=outcome,
            duration=round(self.duration, 6),
            attempt=self.number,
            file=self.file,
            message=message,
        )


def trim(text: str | None, limit: int = MESSAGE_LIMIT) -> str | None:
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_message(report: pytest.TestReport) -> str | None:
    """The one-line-ish text pytest's short summary would show for a report."""
    longrepr = report.longrepr
    if longrepr is None:
        return None
    if isinstance(longrepr, tuple):  # a skip: (path, line number, "Skipped: reason")
        return trim(str(longrepr[2]))
    if isinstance(longrepr, str):
        return trim(longrepr)
    crash = getattr(longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    if isinstance(message, str) and message.strip():
        return trim(message)
    return trim(report.longreprtext)


def _is_subtest(report: pytest.TestReport) -> bool:
    # pytest 9's SubtestReport, or pytest-subtests' SubTestReport: both log
    # under the node id of the test that holds them.
    return type(report).__name__.lower() == "subtestreport"


def _relative_file(report: pytest.TestReport) -> str | None:
    location = getattr(report, "location", None)
    if not location or not location[0]:
        return None
    # pytest gives it relative to the rootdir, with the platform's separator.
    return str(location[0]).replace(os.sep, "/")


class ResultCollector:
    """Collects the reports of a session (in the xdist controller too: the
    workers' reports are logged there again) into results."""

    def __init__(self) -> None:
        self._attempts: dict[str, list[_Attempt]] = {}

    def add(self, report: pytest.TestReport) -> None:
        nodeid = report.nodeid
        attempts = self._attempts.setdefault(nodeid, [])
        when = report.when
        if (
            not attempts
            or attempts[-1].closed
            or (when == "setup" and attempts[-1].set_up and not _is_subtest(report))
        ):
            attempts.append(_Attempt(number=len(attempts) + 1, file=_relative_file(report)))
        attempt = attempts[-1]

        if _is_subtest(report):
            if report.failed:
                attempt.failed_subtests += 1
                attempt.subtest_message = attempt.subtest_message or short_message(report)
            return

        attempt.duration += float(getattr(report, "duration", 0.0) or 0.0)
        if when == "setup":
            attempt.set_up = True
        # pytest types the outcome without "rerun"; pytest-rerunfailures sets it anyway.
        outcome: str = report.outcome
        if outcome == "rerun" or report.failed:
            attempt.record("failed" if when == "call" else "error", short_message(report))
        elif report.skipped:
            attempt.record("skipped", _skip_message(report))
        elif when == "call":
            attempt.record("passed", None)
        if when == "teardown":
            attempt.closed = True

    def results(self) -> list[CaseResult]:
        """Every attempt of every test, in the order the tests first reported."""
        results = []
        for nodeid, attempts in self._attempts.items():
            for attempt in attempts:
                result = attempt.result(nodeid)
                if result is not None:
                    results.append(result)
        return results


def _skip_message(report: pytest.TestReport) -> str | None:
    reason = getattr(report, "wasxfail", None)
    if reason is not None:
        return trim(f"xfail: {reason}" if reason else "xfail")
    return short_message(report)
