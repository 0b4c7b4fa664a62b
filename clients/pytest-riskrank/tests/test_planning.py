"""The plan's arrangement of items and its summary line, without sessions."""

from __future__ import annotations

import pytest
from pytest_riskrank.planning import (
    PlanMismatch,
    arrange,
    arrange_shipped,
    distributed_summary,
    duration_text,
    summary,
)
from pytest_riskrank.results import test_id as riskrank_id
from riskrank_client.api import PlanAnswer, PlannedTest, parse_plan
from riskrank_testing import plan_answer


def _plan(*tests: tuple[str, bool], total: int | None = None) -> PlanAnswer:
    return PlanAnswer(
        plan_id=1,
        status="ready",
        tests=tuple(PlannedTest(test=test, selected=selected) for test, selected in tests),
        total=total,
    )


def test_items_sharing_an_id_move_together_and_repeats_are_ignored() -> None:
    items = ["a1", "b", "a2", "c"]
    ids = ["a", "b", "a", "c"]
    plan = _plan(("b", True), ("a", True), ("b", False), ("gone", True), ("c", False))
    arranged = arrange(items, ids, plan, sharded=False)
    assert arranged.run == ["b", "a1", "a2"]
    assert arranged.deselected == ["c"]
    assert arranged.unplanned == 0


def test_unplanned_items_run_last_in_their_order_unless_sharded() -> None:
    items = ["a", "b", "c", "d"]
    plan = _plan(("c", True), ("a", False), total=4)
    whole = arrange(items, items, plan, sharded=False)
    assert (whole.run, whole.deselected, whole.unplanned) == (["c", "b", "d"], ["a"], 2)
    shard = arrange(items, items, plan, sharded=True)
    assert (shard.run, shard.deselected, shard.unplanned) == (["c"], ["a", "b", "d"], 0)


def test_a_sharded_plan_must_cover_the_tests_sent() -> None:
    with pytest.raises(PlanMismatch, match="the plan covers 3 tests, 2 were sent"):
        arrange(["a", "b"], ["a", "b"], _plan(("a", True), total=3), sharded=True)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0s"), (59.4, "59s"), (60, "1m 00s"), (3599, "59m 59s"), (3660, "1h 01m")],
)
def test_durations_read_like_durations(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_the_summary_of_a_plan_without_figures() -> None:
    plan = PlanAnswer(plan_id=None, status="heuristic", tests=())
    assert summary(plan, running=3, collected=5, shard=None, unplanned=1) == (
        "plan (heuristic): running 3 of 5 tests; 1 test not in the plan run last"
    )


def test_the_line_states_the_chance_of_a_miss_when_the_server_sends_it() -> None:
    # A server that sends miss_probability: both figures. One from before
    # it (the contract example has none): the expected failures alone.
    newer = parse_plan(plan_answer([("a", True), ("b", False)], miss_probability=0.19))
    assert newer.miss_probability == 0.19
    assert summary(newer, running=1, collected=2, shard=None, unplanned=0) == (
        "plan 17 (ready, model v3): running 1 of 2 tests; about 2m 05s saved; "
        "miss risk 0.21 expected failures, 19% chance of any"
    )
    rare = parse_plan(plan_answer([("a", True), ("b", False)], miss_probability=0.00004))
    assert summary(rare, running=1, collected=2, shard=None, unplanned=0).endswith(
        "miss risk 0.21 expected failures, <0.1% chance of any"
    )
    older = parse_plan(plan_answer([("a", True), ("b", False)]))
    assert older.miss_probability is None
    assert summary(older, running=1, collected=2, shard=None, unplanned=0).endswith(
        "miss risk 0.21 expected failures"
    )


def test_the_contract_example_parses() -> None:
    parsed = parse_plan(plan_answer([("t::a", True), ("t::b", False)]))
    assert parsed.plan_id == 17
    assert parsed.tests == (
        PlannedTest(test="t::a", selected=True, rank=1, rule="model"),
        PlannedTest(test="t::b", selected=False, rank=2, rule="budget"),
    )
    assert (parsed.total, parsed.duration_dropped, parsed.expected_failures_dropped) == (
        2,
        125.0,
        0.21,
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"status": None}, "no 'status'"),
        ({"total": 2.5}, "'total' is not an integer"),
        ({"full_run": "no"}, "'full_run' is not a boolean"),
        ({"duration_dropped": "long"}, "'duration_dropped' is not a number"),
        ({"tests": [3]}, "an entry of 'tests' is not an object"),
    ],
)
def test_a_plan_of_the_wrong_shape_says_what_is_wrong(
    change: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_plan(plan_answer([("t::a", True)]) | change)


def test_ids_collapse_whitespace_as_the_server_does() -> None:
    assert riskrank_id("t.py::test_x[a  b\tc]") == "t.py::test_x[a b c]"


def test_an_xdist_worker_follows_the_shipped_plan_and_runs_new_tests_once() -> None:
    """Workers got the plan without sending their tests: a shard's answer
    lists its own tests, `known` the whole plan's; a test riskrank does not
    know ("new") runs after the planned ones, in shard 1 only."""
    items = ["a", "b", "c", "new"]
    whole = arrange_shipped(items, items, {"tests": [["c", True], ["a", False], ["b", True]]})
    assert (whole.run, whole.deselected, whole.unplanned) == (["c", "b", "new"], ["a"], 1)
    shard = {"tests": [["c", True]], "sharded": True, "known": ["a", "b", "c"]}
    first = arrange_shipped(items, items, shard | {"new_here": True})
    assert (first.run, first.deselected, first.unplanned) == (["c", "new"], ["a", "b"], 1)
    other = arrange_shipped(items, items, shard | {"new_here": False})
    assert (other.run, other.deselected) == (["c"], ["a", "b", "new"])


def test_the_line_under_xdist_says_what_the_workers_run() -> None:
    plan = parse_plan(plan_answer([("a", True), ("b", False)]))
    assert distributed_summary(plan, running=1, workers=2, shard="2/3") == (
        "plan 17 (ready, model v3): running 1 test on 2 xdist workers, riskiest first "
        "(shard 2/3); about 2m 05s saved; miss risk 0.21 expected failures"
    )
    everything = parse_plan(plan_answer([("a", True)], full_run=True, full_run_reason="x.lock"))
    assert distributed_summary(everything, running=1, workers=1, shard=None) == (
        "plan 17 (ready, model v3): running 1 test on 1 xdist worker, riskiest first; "
        "full run: x.lock"
    )


def test_the_line_says_when_the_dropped_tests_would_run_after_all() -> None:
    """The miss risk counts the failures among the dropped tests; where the
    plan expands (not under a shard, whose answer lists none of them), the
    line says when they run too."""
    one = parse_plan(plan_answer([("a", True), ("b", False)], expand_after=1))
    assert summary(one, running=1, collected=2, shard=None, unplanned=0) == (
        "plan 17 (ready, model v3): running 1 of 2 tests; about 2m 05s saved; miss risk 0.21 "
        "expected failures; the dropped tests run too if 1 selected test that had passed fails"
    )
    assert summary(one, running=1, collected=2, shard="1/2", unplanned=0) == (
        "plan 17 (ready, model v3): running 1 of 2 tests (shard 1/2); about 2m 05s saved; "
        "miss risk 0.21 expected failures"
    )
    off = parse_plan(plan_answer([("a", True), ("b", False)], expand_after=0))
    assert "run too" not in summary(off, running=1, collected=2, shard=None, unplanned=0)
