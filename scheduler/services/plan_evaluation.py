"""How a plan did, once the outcomes of the runs that followed it are in.

A run that followed a plan (SuiteRun.plan_id) is folded into the plan's
evaluation after it is ingested: every ingested run of the plan is read
again and the evaluation computed from scratch, so a report ingested twice
changes nothing and the shards of one build add up.

What it holds (Plan.evaluation, JSON):

- the APFD (and cost-aware APFDc) of the plan's ranking over the tests that
  ran: the planned tests by rank (riskiest first, as the plan lists them),
  then any test the plan did not hold (new tests). The policy's run order is
  computed per request and not stored; it is this ranking when the budget
  counts tests (the default), and risk per second when it counts time, so
  the APFD measures the ranking, which is what the model is responsible for;
- the failures caught among the selected tests, and those of the exploration
  sample: selected tests the policy would have dropped, kept at random with
  a logged probability (propensity < 1). They are the only unbiased evidence
  of what trimming misses;
- failures among dropped tests that ran anyway (a full run in another job);
- a Horvitz-Thompson estimate of what the budget dropped: each failure found
  in the exploration sample, kept with probability p, stands for 1/p
  failures among the tests the budget would drop, (1 - p)/p of them missed;
- the calibration tally of the probabilities the plan served (per bin of
  the probability: the tests that ran, the sum of their probabilities and
  their failures, a test of the exploration sample counted 1/p times, as
  the calibration refresh counts it) and the scorer that served them
  (`model_id`): the live check of calibration drift adds them up over a
  window of plans (scheduler.planning.monitor).

A test's outcome is that of its last attempt in a run (a rerun that passes
is a pass, as training sees it), the worst over the plan's runs; a skipped
test did not run. Pure functions first, then the one database function."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler import metrics
from scheduler.evaluation import metrics as measures
from scheduler.models import Execution, Outcome, Plan, PlanItem, RunStatus, SuiteRun
from scheduler.planning.policy import WATCHED_RULES
from scheduler.planning.records import DecisionRecord, Payload, RecordError
from scheduler.risk import calibration
from scheduler.services import recalibration, trimming

log = logging.getLogger(__name__)

# Worse outcomes win across the runs of one plan (the replay's order).
_WORSE = {Outcome.PASSED: 0, Outcome.FAILED: 1, Outcome.ERROR: 2}
_FAILING = (Outcome.FAILED, Outcome.ERROR)


@dataclass(frozen=True)
class PlannedTest:
    """One item of a plan as the policy left it."""

    test_id: int
    rank: int  # in the order CI ran (the policy's), else the stored rank
    selected: bool | None
    propensity: float | None = None
    rule: str | None = None
    probability: float | None = None  # as the plan served it (calibrated)

    @property
    def explored(self) -> bool:
        """Kept by the exploration draw rather than by a rule or the budget."""
        if not self.selected:
            return False
        if self.propensity is not None:
            return self.propensity < 1.0
        return self.rule == "exploration"


@dataclass(frozen=True)
class Observed:
    """A test's outcome over the runs of a plan."""

    outcome: Outcome
    duration: float | None

    @property
    def failed(self) -> bool:
        return self.outcome in _FAILING


def observed_outcomes(
    rows: Iterable[tuple[int, int, int, Outcome, float | None]],
) -> dict[int, Observed]:
    """Each test's outcome from (run id, test id, attempt, outcome, duration)
    rows: the last attempt of each run, the worst over runs; skips left out."""
    finals: dict[tuple[int, int], tuple[int, Outcome, float | None]] = {}
    for run_id, test_id, attempt, outcome, duration in rows:
        seen = finals.get((run_id, test_id))
        if seen is None or attempt >= seen[0]:
            finals[(run_id, test_id)] = (attempt, outcome, duration)
    observed: dict[int, Observed] = {}
    for (_run_id, test_id), (_attempt, outcome, duration) in sorted(finals.items()):
        if outcome is Outcome.SKIPPED:
            continue
        seen_outcome = observed.get(test_id)
        if seen_outcome is None or _WORSE[outcome] > _WORSE[seen_outcome.outcome]:
            observed[test_id] = Observed(outcome, duration)
    return observed


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def every_dropped_ran(planned: Sequence[PlannedTest], observed: Mapping[int, Observed]) -> bool:
    """Whether the plan dropped tests and every one of them ran anyway: the
    build expanded (scheduler.planning.policy.expanded) or CI ran the whole
    suite. Then what ran did not depend on the exploration draw."""
    dropped = [item.test_id for item in planned if item.selected is False]
    return bool(dropped) and all(test_id in observed for test_id in dropped)


def evaluate(
    items: Sequence[PlannedTest], observed: Mapping[int, Observed], *, run_ids: Sequence[int]
) -> dict[str, Any]:
    """The evaluation of a plan whose runs showed `observed` (JSON-ready).

    When no item carries a selection (a plan nobody applied a policy to),
    every item counts as selected. When some do, an item without one was not
    part of what was asked for and counts as outside the plan."""
    applied = any(item.selected is not None for item in items)
    planned = sorted(
        (item for item in items if item.selected is not None or not applied),
        key=lambda item: (item.rank, item.test_id),
    )
    in_plan = {item.test_id for item in planned}

    def selected(item: PlannedTest) -> bool:
        return item.selected is not False

    # The plan's order over the tests that ran: planned by rank, then the rest.
    order = [item.test_id for item in planned if item.test_id in observed]
    order += sorted(test_id for test_id in observed if test_id not in in_plan)
    failed = [observed[test_id].failed for test_id in order]
    durations = [max(0.0, observed[test_id].duration or 0.0) for test_id in order]

    chosen = [item for item in planned if selected(item)]
    dropped = [item for item in planned if not selected(item)]
    explored = [item for item in chosen if item.explored]

    def ran(group: Iterable[PlannedTest]) -> list[PlannedTest]:
        return [item for item in group if item.test_id in observed]

    def failing(group: Iterable[PlannedTest]) -> list[PlannedTest]:
        return [item for item in ran(group) if observed[item.test_id].failed]

    found_in_exploration = failing(explored)
    watched = [item for item in chosen if item.rule in WATCHED_RULES]
    # Every test the budget dropped ran (the build expanded, or CI ran the
    # whole suite): nothing was let through, and each outcome counts once.
    expanded = every_dropped_ran(planned, observed)
    # Horvitz-Thompson: a failure kept with probability p stands for 1/p.
    weights = (
        []
        if expanded
        else [1.0 / item.propensity for item in found_in_exploration if item.propensity]
    )
    estimated_beyond_budget = math.fsum(weights)
    estimated_missed = math.fsum(weight - 1.0 for weight in weights)
    caught = len(failing(chosen))
    outside = [test_id for test_id in observed if test_id not in in_plan]
    served = [(item, item.probability) for item in ran(planned) if item.probability is not None]
    # What the plan's probabilities expected: failures among all its tests,
    # and among those it let through (dropped and not run; none when the
    # build expanded): `confidence` mode's window reads them
    # (scheduler.planning.monitor.confidence_scale).
    expected_failures = math.fsum(item.probability or 0.0 for item in planned)
    let_through = (
        0.0
        if expanded
        else math.fsum(item.probability or 0.0 for item in dropped if item.test_id not in observed)
    )
    return {
        "runs": len(run_ids),
        "run_ids": sorted(run_ids),
        "tests": len(planned),
        "selected": len(chosen),
        "dropped": len(dropped),
        "exploration": len(explored),
        "ran": len(order),
        "ran_selected": len(ran(chosen)),
        "ran_dropped": len(ran(dropped)),
        "ran_exploration": len(ran(explored)),
        "expanded": expanded,
        # Failures among the watched tests (scheduler.planning.policy.watched),
        # how often they fail being what an expansion expects at least.
        "watched": len(ran(watched)),
        "watched_failures": len(failing(watched)),
        "ran_outside_plan": len(outside),
        "selected_not_run": len(chosen) - len(ran(chosen)),
        "failures": sum(failed),
        "failures_caught": caught,
        "failures_in_exploration": len(found_in_exploration),
        "failures_dropped_but_ran": len(failing(dropped)),
        "failures_outside_plan": sum(observed[test_id].failed for test_id in outside),
        "apfd": _rounded(measures.apfd(failed)) if order else None,
        "apfdc": _rounded(measures.apfdc(failed, durations)) if order else None,
        "first_failure": measures.first_failure_position(failed) if order else None,
        "estimated_failures_beyond_budget": _rounded(estimated_beyond_budget),
        "estimated_missed_failures": _rounded(estimated_missed),
        "expected_failures": _rounded(expected_failures),
        "expected_let_through": _rounded(let_through),
        # The share of this build's failures the plan let through, estimated.
        "estimated_miss_rate": (
            _rounded(estimated_missed / (caught + estimated_missed))
            if caught + estimated_missed > 0
            else None
        ),
        "calibration_bins": calibration.tally_bins(
            [probability for _, probability in served],
            [observed[item.test_id].failed for item, _ in served],
            [
                1 if expanded else recalibration.weight_of(item.explored, item.propensity)
                for item, _ in served
            ],
        ),
    }


# --- the database -------------------------------------------------------------


def decision_of(session: Session, plan_id: int) -> DecisionRecord | None:
    """The decision last recorded on a plan (None: no policy applied yet)."""
    blob = session.scalar(select(Plan.decision).where(Plan.id == plan_id))
    return DecisionRecord.decode(bytes(blob)) if blob is not None else None


def planned_tests(session: Session, plan_id: int) -> list[PlannedTest]:
    """A plan's items as its recorded decision left them: ranked in the
    order CI ran them (the stored rank before any policy was applied)."""
    record = decision_of(session, plan_id)
    items = session.execute(
        select(PlanItem.test_id, PlanItem.rank, PlanItem.probability).where(
            PlanItem.plan_id == plan_id
        )
    ).all()
    if record is None:
        return [
            PlannedTest(test_id, rank, None, probability=probability)
            for test_id, rank, probability in items
        ]
    planned = []
    for test_id, rank, probability in items:
        row = rank - 1  # the decision is in stored rank order
        if not 0 <= row < len(record):
            planned.append(PlannedTest(test_id, rank, None, probability=probability))
            continue
        planned.append(
            PlannedTest(
                test_id,
                int(record.rank[row]) or rank,
                record.selected_at(row),
                record.propensity_at(row),
                record.rule[row],
                probability,
            )
        )
    return planned


def evaluate_plan(session: Session, plan_id: int) -> dict[str, Any] | None:
    """Compute and store the evaluation of a plan from all its ingested runs.

    The plan's row is locked first, so that two shards ingested at once are
    evaluated one after the other, the second seeing the first's outcomes."""
    plan = session.get(Plan, plan_id, with_for_update=True)
    if plan is None:
        return None
    items = planned_tests(session, plan_id)
    run_ids = list(
        session.scalars(
            select(SuiteRun.id).where(
                SuiteRun.plan_id == plan_id, SuiteRun.status == RunStatus.INGESTED
            )
        )
    )
    evaluation = evaluate(items, outcomes_of(session, plan_id), run_ids=run_ids)
    evaluation["duration_dropped"] = _duration_dropped(session, plan_id, items)
    evaluation["policy"] = plan.policy
    evaluation["model_id"] = plan.model_id
    previous = plan.evaluation
    plan.evaluation = evaluation
    session.flush()
    _count(session, plan.repository_id, previous, evaluation)
    trimming.refresh(session, plan.repository_id)
    if previous is None:
        recalibration.after_evaluation(session, plan.repository_id)
    return evaluation


def outcomes_of(session: Session, plan_id: int) -> dict[int, Observed]:
    """Each test's outcome over the plan's ingested runs."""
    rows = session.execute(
        select(
            Execution.run_id,
            Execution.test_id,
            Execution.attempt,
            Execution.outcome,
            Execution.duration,
        )
        .join(SuiteRun, SuiteRun.id == Execution.run_id)
        .where(SuiteRun.plan_id == plan_id, SuiteRun.status == RunStatus.INGESTED)
    )
    return observed_outcomes(rows)


def _duration_dropped(session: Session, plan_id: int, items: Sequence[PlannedTest]) -> float:
    """The expected seconds (as scored: the plan's payload) of the tests the
    plan dropped, unknown durations counted 0: the CI time it saved."""
    dropped = {item.test_id for item in items if item.selected is False}
    blob = session.scalar(select(Plan.payload).where(Plan.id == plan_id)) if dropped else None
    if blob is None:
        return 0.0
    try:
        test_ids, durations = Payload.durations(bytes(blob))
    except RecordError:
        return 0.0
    mask = np.isin(test_ids, np.fromiter(dropped, dtype=np.int64)) & np.isfinite(durations)
    return round(float(np.clip(durations[mask], 0.0, None).sum()), 3)


# What each figure of an evaluation adds to the counters of scheduler.metrics.
_COUNTED = (
    ("selected", metrics.TESTS_SELECTED),
    ("dropped", metrics.TESTS_DROPPED),
    ("duration_dropped", metrics.SECONDS_SAVED),
    ("failures_caught", metrics.FAILURES_CAUGHT),
    ("failures_dropped_but_ran", metrics.FAILURES_MISSED),
    ("estimated_missed_failures", metrics.FAILURES_MISSED_ESTIMATED),
)


def _count(
    session: Session,
    repository_id: int,
    previous: Mapping[str, Any] | None,
    evaluation: Mapping[str, Any],
) -> None:
    """Count what this evaluation changed, once it commits: the counters
    move by the difference with the previous evaluation of the plan, so a
    plan counts once however many of its shards report, and a report
    ingested twice adds nothing."""
    slug = metrics.repository_label(session, repository_id)
    if previous is None:
        metrics.after_commit(session, metrics.PLANS_EVALUATED.labels(repository=slug))
    for key, counter in _COUNTED:
        # The series exists from the repository's first evaluation on, at 0
        # (a dashboard's ratio finds its terms before the first failure).
        child = counter.labels(repository=slug)
        change = float(evaluation.get(key) or 0) - float((previous or {}).get(key) or 0)
        if change > 0:  # a decision rewritten smaller between shards takes nothing back
            metrics.after_commit(session, child, change)


def evaluate_after_ingestion(session: Session, plan_id: int) -> None:
    """Evaluate a plan after one of its runs was ingested, in a savepoint: an
    evaluation that fails is logged and never costs the run its ingestion."""
    try:
        with session.begin_nested():
            evaluate_plan(session, plan_id)
    except Exception:
        log.exception("could not evaluate plan %s", plan_id)
