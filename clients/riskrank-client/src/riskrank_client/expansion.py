"""When a build runs what its plan dropped (pure, no imports beyond the
standard library): riskrank's plan says, in `expand_after`, how many of the
selected tests that had passed must fail in this build for the change to
have broken more than the plan foresaw. Those tests are the ones the rules
and the budget selected (rules `model`, `must_run`, `new`,
`own_file_changed`): not a test that failed lately (its failing again is
no news), nor one of the exploration sample (the draw must not decide).
Once that many failed, every test the plan dropped runs too, and the run's
upload tells riskrank so."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from riskrank_client.api import PlanAnswer

WATCHED_RULES = frozenset({"model", "must_run", "new", "own_file_changed"})


def watched(plan: PlanAnswer) -> frozenset[str]:
    """The selected tests whose failures count toward expanding."""
    return frozenset(t.test for t in plan.tests if t.selected and t.rule in WATCHED_RULES)


def dropped(plan: PlanAnswer) -> list[str]:
    """The tests the plan dropped, in its order."""
    return [t.test for t in plan.tests if not t.selected]


def due(plan: PlanAnswer, failed: Iterable[str]) -> bool:
    """Whether the tests that failed so far expand the build."""
    after = plan.expand_after
    if after is None or after < 1 or plan.run_all or not dropped(plan):
        return False
    return len(watched(plan) & set(failed)) >= after
