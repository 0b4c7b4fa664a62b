"""When a build runs what its plan dropped: the plan's `expand_after`, read
from the answer, against the watched tests that failed."""

from __future__ import annotations

import pytest
from riskrank_client import expansion
from riskrank_client.api import parse_plan


def answer(expand_after: object, rules: list[tuple[str, bool, str]]) -> dict[str, object]:
    return {
        "status": "ready",
        "expand_after": expand_after,
        "tests": [{"test": t, "selected": s, "rule": r} for t, s, r in rules],
    }


PLAN = [
    ("a", True, "model"),
    ("b", True, "new"),
    ("c", True, "recently_failed"),
    ("d", True, "exploration"),
    ("e", False, "budget"),
    ("f", False, "budget"),
]


def test_two_watched_failures_expand_a_plan_that_says_2() -> None:
    plan = parse_plan(answer(2, PLAN))
    assert plan.expand_after == 2
    assert expansion.watched(plan) == {"a", "b"}
    assert expansion.dropped(plan) == ["e", "f"]
    assert expansion.due(plan, ["a", "b"])
    assert not expansion.due(plan, ["a"])
    # A test that failed lately, or one of the exploration sample: not counted.
    assert not expansion.due(plan, ["a", "c", "d"])


def test_nothing_expands_without_a_threshold_or_a_dropped_test() -> None:
    assert parse_plan(answer(None, PLAN)).expand_after is None
    assert not expansion.due(parse_plan(answer(None, PLAN)), ["a", "b"])
    everything = [(t, True, r) for t, _s, r in PLAN]
    assert not expansion.due(parse_plan(answer(2, everything)), ["a", "b"])
    without = {"status": "ready", "tests": []}  # a server from before expansion
    assert parse_plan(without).expand_after is None


def test_a_threshold_that_is_not_a_whole_number_is_refused() -> None:
    with pytest.raises(ValueError, match="'expand_after' is not an integer"):
        parse_plan(answer("2", PLAN))
