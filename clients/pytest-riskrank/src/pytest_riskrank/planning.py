"""Following a plan: which collected items run, in which order, and the one
line that says so (pure functions, tested without pytest sessions).

Fail open: a test the plan does not mention runs (after the planned ones),
except under a shard, where the plan answers for exactly the tests sent and
an unlisted test belongs to another shard or was dropped. A sharded answer
that does not cover what was sent is not followed at all."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from riskrank_client.api import PlanAnswer, PlannedTest

T = TypeVar("T")


class PlanMismatch(ValueError):
    """The answer is well-formed but not a plan for the tests that were sent."""


@dataclass(frozen=True)
class Arrangement(Generic[T]):
    run: list[T]  # in run order
    deselected: list[T]
    unplanned: int  # items the plan did not mention, run after the planned ones


def arrange(
    items: Sequence[T],
    ids: Sequence[str],
    plan: PlanAnswer,
    *,
    sharded: bool,
    sent: bool = True,
) -> Arrangement[T]:
    """The items to run in the plan's order and the items to deselect.
    `ids[i]` is riskrank's id of `items[i]`; several items may share one.
    `sent`: the plan was asked for with exactly these tests (a sharded
    answer must then cover them all)."""
    if len(items) != len(ids):
        raise ValueError("one id per item")
    by_id: dict[str, list[T]] = {}
    for item, test in zip(items, ids, strict=True):
        by_id.setdefault(test, []).append(item)
    if sent and sharded and plan.total is not None and plan.total != len(by_id):
        raise PlanMismatch(f"the plan covers {plan.total} tests, {len(by_id)} were sent")
    run: list[T] = []
    deselected: list[T] = []
    placed: set[str] = set()
    for planned in plan.tests:
        found = by_id.get(planned.test)
        if found is None or planned.test in placed:
            continue  # not collected here (or listed twice): nothing to do
        placed.add(planned.test)
        (run if planned.selected else deselected).extend(found)
    unplanned = [item for item, test in zip(items, ids, strict=True) if test not in placed]
    if sharded:
        deselected.extend(unplanned)
        return Arrangement(run=run, deselected=deselected, unplanned=0)
    return Arrangement(run=run + unplanned, deselected=deselected, unplanned=len(unplanned))


def arrange_all(items: Sequence[T], ids: Sequence[str], plan: PlanAnswer) -> Arrangement[T]:
    """Every item, for a plan that asks for the whole suite (`run_all`): the
    ones it lists in its order, then the others as collected."""
    everything = replace(plan, tests=tuple(replace(test, selected=True) for test in plan.tests))
    return arrange(items, ids, everything, sharded=False, sent=False)


def whole_suite_reason(plan: PlanAnswer) -> str:
    """Why a `run_all` plan asks for the whole suite, for the summary line."""
    if plan.status == "no_tests" or plan.total == 0 or not plan.tests:
        return "riskrank knows no test of this repository yet"
    if plan.full_run:
        return f"full run: {plan.full_run_reason or 'a rule asked for every test'}"
    if plan.status == "fallback":
        return "riskrank could not plan"  # the heading carries its message
    return plan.message or "riskrank cannot name the tests to run"


def shipped_whole_suite(plan: PlanAnswer) -> dict[str, Any]:
    """What an xdist controller hands its workers for a `run_all` plan:
    every test, in the listed order where the plan lists it, on every shard."""
    return {
        "tests": [[test.test, True] for test in plan.tests],
        "sharded": False,
        "known": [],
        "new_here": True,
    }


def arrange_shipped(
    items: Sequence[T], ids: Sequence[str], shipped: Mapping[str, Any]
) -> Arrangement[T]:
    """`arrange` for an xdist worker, with the plan its controller handed
    it (asked for without a test list): `tests` as [id, selected] in run
    order; with a shard, `known` lists every test of the whole plan, and a
    collected test outside it (new to riskrank) runs only where `new_here`
    (shard 1), after the planned ones."""
    plan = PlanAnswer(
        plan_id=None,
        status="ready",
        tests=tuple(PlannedTest(str(test), bool(selected)) for test, selected in shipped["tests"]),
    )
    if not shipped.get("sharded"):
        return arrange(items, ids, plan, sharded=False, sent=False)
    shard = arrange(items, ids, plan, sharded=True, sent=False)
    known = set(shipped.get("known") or ())
    new = [item for item, test in zip(items, ids, strict=True) if test not in known]
    if not new or not shipped.get("new_here"):
        return shard
    fresh = {id(item) for item in new}
    return Arrangement(
        run=[*shard.run, *new],
        deselected=[item for item in shard.deselected if id(item) not in fresh],
        unplanned=len(new),
    )


def duration_text(seconds: float) -> str:
    """A duration for people: 45s, 3m 20s, 1h 05m."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _count(number: int) -> str:
    return f"{number} test" if number == 1 else f"{number} tests"


def _heading(plan: PlanAnswer) -> str:
    """`plan 17 (ready, model v3)`: which plan, and how it was made."""
    head = "plan" if plan.plan_id is None else f"plan {plan.plan_id}"
    status = plan.status
    if plan.model_version is not None:
        status += f", model v{plan.model_version}"
    if plan.status == "fallback" and plan.message:
        status += f": {plan.message}"
    return f"{head} ({status})"


def summary(
    plan: PlanAnswer, *, running: int, collected: int, shard: str | None, unplanned: int
) -> str:
    """The plan's one line: what riskrank chose and what it may cost."""
    if plan.run_all:
        order = "in riskrank's order" if plan.tests else "as collected"
        what = f"running all {_count(collected)} {order}"
        return f"{_heading(plan)}: {what}; the whole suite: {whole_suite_reason(plan)}"
    if running == collected:
        what = f"running all {_count(collected)} in riskrank's order"
    else:
        what = f"running {running} of {_count(collected)}"
    if shard is not None:
        what += f" (shard {shard})"
    parts = [f"{_heading(plan)}: {what}"]
    if plan.full_run:
        parts.append(f"full run: {plan.full_run_reason or 'a rule asked for every test'}")
    if running < collected:
        if plan.duration_dropped is not None and math.isfinite(plan.duration_dropped):
            parts.append(f"about {duration_text(plan.duration_dropped)} saved")
        risk = miss_risk(plan)
        if risk:
            parts.append(risk)
        after = plan.expand_after
        if after is not None and after >= 1 and shard is None:
            # The miss risk counts the dropped tests' failures before that:
            # where they come together, most come in builds that expand.
            parts.append(
                f"the dropped tests run too if {after} selected "
                + ("test that had passed fails" if after == 1 else "tests that had passed fail")
            )
    if unplanned:
        parts.append(f"{_count(unplanned)} not in the plan run last")
    return "; ".join(parts)


def miss_risk(plan: PlanAnswer) -> str | None:
    """What the dropped tests may hide, as the server states it: the
    expected failures among them and, from a server that sends it, the
    chance that at least one of them fails."""
    risk = plan.expected_failures_dropped
    if risk is None or not math.isfinite(risk):
        return None
    text = f"miss risk {risk:.2f} expected failures"
    chance = plan.miss_probability
    if chance is not None and math.isfinite(chance):
        text += f", {_percent(chance)} chance of any"
    return text


def _percent(chance: float) -> str:
    """A chance as a percentage a reader can tell from 0: "<0.1%" below that."""
    if 0 < chance < 0.001:
        return "<0.1%"
    return f"{chance:.1%}" if chance < 0.1 else f"{chance:.0%}"


def distributed_summary(plan: PlanAnswer, *, running: int, workers: int, shard: str | None) -> str:
    """The plan's one line under pytest-xdist: the controller sees what its
    workers will run, not what they collected."""
    where = f"{workers} xdist worker" + ("" if workers == 1 else "s")
    what = f"running {_count(running)} on {where}, riskiest first"
    if plan.run_all:
        what = f"running {_count(running)} on {where}"
        return f"{_heading(plan)}: {what}; the whole suite: {whole_suite_reason(plan)}"
    if shard is not None:
        what += f" (shard {shard})"
    parts = [f"{_heading(plan)}: {what}"]
    if plan.full_run:
        parts.append(f"full run: {plan.full_run_reason or 'a rule asked for every test'}")
    elif any(not test.selected for test in plan.tests):
        if plan.duration_dropped is not None and math.isfinite(plan.duration_dropped):
            parts.append(f"about {duration_text(plan.duration_dropped)} saved")
        risk = miss_risk(plan)
        if risk:
            parts.append(risk)
    return "; ".join(parts)
