"""Per-test running statistics, folded one build at a time (pure functions).

A *build* is one commit's run of the suite: the reports that share a run key
(shards, matrix jobs) are one build, and a report without a run key is a
build of its own. A test counts once per build, by its worst final outcome
there: a failure in any shard makes the build a failure for that test.
Skips say nothing about a test's health, so they leave its statistics alone."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from scheduler.outcomes import Outcome

# Letters of the recent-outcome window, newest first.
PASS, FAIL, ERROR = "P", "F", "E"
WINDOW = 64  # the width of test_stats.recent

LETTERS = {Outcome.PASSED: PASS, Outcome.FAILED: FAIL, Outcome.ERROR: ERROR}


def is_failing(letter: str) -> bool:
    return letter in (FAIL, ERROR)


@dataclass(frozen=True)
class Tally:
    """What test_stats holds for one test."""

    runs: int = 0
    failures: int = 0
    last_outcome: Outcome | None = None
    builds_since_failure: int | None = None
    recent: str = ""
    flips: int = 0
    flaky_runs: int = 0
    duration_mean: float | None = None
    duration_count: int = 0
    last_build: str | None = None
    last_run_at: datetime | None = None
    last_failure_at: datetime | None = None


@dataclass(frozen=True)
class Observation:
    """A test's final outcome in one report, with what the links need to know."""

    outcome: Outcome  # never SKIPPED here
    duration: float | None
    flaky: bool


@dataclass(frozen=True)
class Step:
    """The new state, and what changed for the file-test links."""

    state: Tally
    new_build: bool  # counts once more as "ran together" with the changed files
    # The build now fails for the test, and its previous build did not (or
    # it never ran before): a status change, which counts once more as
    # "failed together" (scheduler.risk.links). A test that stays red is not.
    status_change: bool


def _flip(previous: str | None, current: str) -> int:
    return int(previous is not None and is_failing(previous) != is_failing(current))


def _with_duration(state: Tally, duration: float | None) -> Tally:
    if duration is None:
        return state
    count = state.duration_count + 1
    mean = state.duration_mean or 0.0
    return replace(state, duration_mean=mean + (duration - mean) / count, duration_count=count)


def advance(state: Tally, seen: Observation, *, build: str, at: datetime) -> Step:
    """Fold one report's final outcome for a test into its statistics."""
    letter = LETTERS[seen.outcome]
    failing = is_failing(letter)
    state = _with_duration(state, seen.duration)

    if state.last_build == build and state.recent:
        # Another report of the build already counted: the worse outcome wins.
        current = state.recent[0]
        previous = state.recent[1] if len(state.recent) > 1 else None
        if seen.flaky:
            state = replace(state, flaky_runs=state.flaky_runs + 1)
        if not failing or is_failing(current):
            return Step(state, new_build=False, status_change=False)
        state = replace(
            state,
            failures=state.failures + 1,
            last_outcome=seen.outcome,
            builds_since_failure=0,
            recent=letter + state.recent[1:],
            flips=state.flips - _flip(previous, current) + _flip(previous, letter),
            last_failure_at=at,
        )
        changed = previous is None or not is_failing(previous)
        return Step(state, new_build=False, status_change=changed)

    previous = state.recent[0] if state.recent else None
    if failing:
        since: int | None = 0
    elif state.builds_since_failure is not None:
        since = state.builds_since_failure + 1
    else:
        since = None
    state = replace(
        state,
        runs=state.runs + 1,
        failures=state.failures + int(failing),
        last_outcome=seen.outcome,
        builds_since_failure=since,
        recent=(letter + state.recent)[:WINDOW],
        flips=state.flips + _flip(previous, letter),
        flaky_runs=state.flaky_runs + int(seen.flaky),
        last_build=build,
        last_run_at=at,
        last_failure_at=at if failing else state.last_failure_at,
    )
    changed = failing and (previous is None or not is_failing(previous))
    return Step(state, new_build=True, status_change=changed)
