"""Failing open: when planning fails, everything runs, in the heuristic
order when the statistics can still be read, else as collected."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from scheduler.db import Database
from scheduler.models import PlanStatus
from scheduler.planning import policy as policies
from scheduler.planning.policy import Policy, Shard
from scheduler.services.plans.answer import Answer, PlannedTests, head, run_all
from scheduler.services.plans.params import PlanRequest

log = logging.getLogger(__name__)

_ALL_STATS = text(
    "SELECT t.name, s.recent, s.failures, s.runs, s.duration_mean FROM known_tests t "
    "LEFT JOIN test_stats s ON s.test_id = t.id WHERE t.repository_id = :repository "
    "ORDER BY t.id"
)
_ACTIVE_STATS = text(
    "SELECT t.name, s.recent, s.failures, s.runs, s.duration_mean FROM known_tests t "
    "LEFT JOIN test_stats s ON s.test_id = t.id WHERE t.repository_id = :repository "
    "AND t.is_active ORDER BY t.id"
)


def fallback_order(
    session: Session, *, repository_id: int, tests: Sequence[str] | None
) -> tuple[list[str], list[float | None]]:
    """The collected tests (or the repository's active ones) in the
    heuristic order: failed in the last run first, then by failure rate;
    ties in the order given. With their mean durations."""
    query = _ALL_STATS if tests is not None else _ACTIVE_STATS
    stats = {
        name: (recent, failures, runs, duration)
        for name, recent, failures, runs, duration in session.execute(
            query, {"repository": repository_id}
        )
    }
    names = list(dict.fromkeys(tests)) if tests is not None else list(stats)

    def key(item: tuple[int, str]) -> tuple[float, float, int]:
        position, name = item
        recent, failures, runs, _ = stats.get(name, ("", 0, 0, None))
        last = 1.0 if recent and recent[0] in "FE" else 0.0
        rate = (failures or 0) / runs if runs else 0.0
        return (-last, -rate, position)

    ordered = [name for _, name in sorted(enumerate(names), key=key)]
    return ordered, [stats.get(name, (None, None, None, None))[3] for name in ordered]


def fallback(
    database: Database,
    *,
    repository_id: int,
    sha: str,
    request: PlanRequest,
    policy: Policy,
    shard: Shard | None,
    message: str,
) -> Answer:
    """Everything runs: the collected suite in the heuristic order if the
    statistics can be read, else as given (split into shards all the same)."""
    tests = list(dict.fromkeys(request.tests)) if request.tests is not None else []
    durations: list[float | None] = [None] * len(tests)
    try:
        with database.session() as session:
            tests, durations = fallback_order(
                session, repository_id=repository_id, tests=request.tests
            )
    except Exception:
        log.exception("fallback plan for %s: statistics unreadable, keeping the given order", sha)
    expected = policies.expected_durations(
        np.array([math.nan if d is None else d for d in durations], dtype=np.float64)
    )
    listed = np.arange(len(tests), dtype=np.intp)
    if shard is not None:
        listed = policies.shards(listed, expected, shard.count)[shard.index - 1]
    reason = f"Fallback: everything runs ({message})"
    order = listed.tolist()
    answer_head = head(
        plan_id=None,
        sha=sha,
        status=PlanStatus.FALLBACK.value,
        model_version=None,
        policy=policy,
        shard=shard,
    ) | {
        "full_run": True,
        "full_run_reason": "riskrank could not plan this commit",
        "run_all": run_all(total=len(tests), full_run=True, collected=request.tests is not None),
        "total": len(tests),
        "selected": len(listed),
        "duration_selected": round(float(expected[listed].sum()), 3),
        "duration_dropped": 0.0,
        "expected_failures_dropped": 0.0,
        "miss_probability": 0.0,
        "failures_dropped_bound": 0,
        "selected_by": {
            "budget": 0,
            "exploration": 0,
            "escalation": 0,
            "expansion": 0,
            "full_run": len(tests),
        },
        "escalation": policy.escalation,
        "expand_after": None,
        "changes_note": None,
        "message": message,
    }
    return Answer(
        answer_head,
        PlannedTests(
            names=[tests[i] for i in order],
            ranks=[i + 1 for i in order],
            probability=[None] * len(order),
            selected=[True] * len(order),
            reasons=[reason] * len(order),
            durations=[durations[i] for i in order],
            rules=[policies.Rule.FULL_RUN.value] * len(order),
        ).json(),
    )
