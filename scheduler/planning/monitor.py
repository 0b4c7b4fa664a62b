"""What trimming misses, estimated live, and when to stop trimming (pure).

The exploration sample is the only unbiased evidence of what the budget
drops: a test over the budget runs anyway with a logged probability p (the
policy's exploration rate), so each failure found there stands for 1/p
failures among the tests over the budget, of which (1 - p)/p were not run
(Horvitz-Thompson, as plan evaluation counts it per plan). Over a window of
the newest evaluated plans:

    missed = sum over explored failures of (1/p - 1)
    rate = missed / (caught + missed)

where `caught` counts every failing test that ran as the plan selected it
(the exploration sample included). This is the share of the failures that
trimming let through, the quantity a mode promises on (`confidence` t
promises at most 1 - t).

Its interval: the explored failures are few, so their count k is taken as
Poisson, with its exact (Garwood) 95% interval [k_lo, k_hi]; the rate is
increasing in k at the window's weights, so the rate at k_lo and at k_hi
bound it. With no explored failure at all, the weight is the mean 1/p of
the plans that explored.

Escalation on misses: when the interval's lower bound is above the ceiling (the mode's
promise), there is evidence that trimming misses more than promised, and
every test over the budget runs (`Policy.escalation`), logged with a
propensity of 1. Those builds miss nothing, so they pull the window's rate
down as they come in: escalation lasts until the window, escalated builds
included, is back under the ceiling (a retrained or recalibrated model that
trims well then keeps it there). Why the lower bound and not the upper: at
a 5% exploration rate a window of 100 builds holds a handful of explored
failures, and an upper bound over the ceiling is the rule rather than the
exception even when trimming keeps its promise; escalating on it would run
the whole suite most of the time.

Escalation on calibration drift: plan evaluation also tallies, per bin of
the probability each test that ran was served with, the rows, the sum of
the probabilities and the failures (scheduler.risk.calibration.tally_bins;
a test of the exploration sample counts 1/p times, so the tally stands for
the whole suite). Over the window's plans scored by the scorer of the
newest one (a newly promoted model starts afresh: the old one's errors are
not its own), their sum gives the expected calibration error of what plans
served. When the lower bound of its 95% interval (resampling the plans: a
build's tests fail together, so one build that broke at once is no drift;
calibration.binned_ece_low) is above the repository's `calibration_ceiling`
(default DEFAULT_CALIBRATION_CEILING), over at least MIN_CALIBRATION_BUILDS plans,
the plans' probabilities, and so the miss risk and `confidence` mode's
cut, are not to be trusted: the repository escalates as above. It ends when
the window is back under: the newer plans of a refreshed calibration pull
it down, or a retrained model starts a window of its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scheduler.planning.policy import CONFIDENCE_SCALES, confidence_target
from scheduler.risk import calibration

WINDOW_BUILDS = 100
LEVEL = 0.95
# The share of failures trimming may let through in `fraction` and `time`
# modes, unless the repository sets `miss_ceiling`: `confidence` t promises 1 - t.
DEFAULT_MISS_CEILING = 0.10
# The expected calibration error of the served probabilities above which a
# repository escalates, unless it sets `calibration_ceiling`. Absolute: twice
# the error issue 13 asks of a good calibration (0.01); a repository whose
# tests fail far less often than dune-total's (2.5% of runs) sets a lower one.
DEFAULT_CALIBRATION_CEILING = 0.02
# The most of the budget's dropped tests expansions may be counted to run.
MAX_EXPANSION_SHARE = 0.9
# The most of the failures over the budget expansions may be counted on to catch.
MAX_EXPANSION_CATCH = 0.5
# Fewer evaluated plans of the serving scorer than this measure nothing yet.
MIN_CALIBRATION_BUILDS = 20


@dataclass(frozen=True)
class Tally:
    """One evaluated plan's evidence (from plan evaluation's figures)."""

    caught: int  # failing tests that ran as selected, exploration included
    explored_failures: int  # of those, drawn into the exploration sample
    explored_weight: float  # the sum of 1/p over them
    exploration_rate: float  # the probability a test over the budget ran
    dropped: int  # tests over the budget that did not run
    expanded: int = 0  # tests over the budget that ran because the build expanded
    watched: int = 0  # watched tests that ran (scheduler.planning.policy.watched)
    watched_failures: int = 0  # of those, failing
    expanded_failures: int = 0  # failures among the tests over the budget an expansion ran
    # What the plan's calibrated probabilities said: the expected failures
    # of all its tests, of those it let through (dropped, not run), and,
    # `confidence`, how many it was allowed to let through (1 - its
    # target, times the first): `confidence_scale` reads them.
    expected: float = 0.0
    expected_let_through: float = 0.0
    allowance: float = 0.0

    @classmethod
    def of_evaluation(cls, evaluation: Mapping[str, Any]) -> Tally:
        policy = evaluation.get("policy") or {}
        rate = float(policy.get("exploration_rate") or 0.0)
        if policy.get("escalation"):
            rate = 1.0
        watched = int(evaluation.get("watched") or 0)
        watched_failures = int(evaluation.get("watched_failures") or 0)
        expected = float(evaluation.get("expected_failures") or 0.0)
        let_through = float(evaluation.get("expected_let_through") or 0.0)
        allowance = allowance_of(policy, expected)
        if evaluation.get("expanded"):
            # Every test over the budget ran: nothing was let through.
            return cls(
                caught=int(evaluation.get("failures_caught") or 0)
                + int(evaluation.get("failures_dropped_but_ran") or 0),
                explored_failures=0,
                explored_weight=0.0,
                exploration_rate=rate,
                dropped=0,
                expanded=int(evaluation.get("ran_dropped") or 0),
                watched=watched,
                watched_failures=watched_failures,
                expanded_failures=int(evaluation.get("failures_dropped_but_ran") or 0)
                + int(evaluation.get("failures_in_exploration") or 0),
                expected=expected,
                expected_let_through=0.0,
                allowance=allowance,
            )
        return cls(
            caught=int(evaluation.get("failures_caught") or 0),
            explored_failures=int(evaluation.get("failures_in_exploration") or 0),
            explored_weight=float(evaluation.get("estimated_failures_beyond_budget") or 0.0),
            exploration_rate=rate,
            dropped=int(evaluation.get("dropped") or 0),
            watched=watched,
            watched_failures=watched_failures,
            expected=expected,
            expected_let_through=let_through,
            allowance=allowance,
        )


def allowance_of(policy: Mapping[str, Any], expected: float) -> float:
    """The expected failures a plan with this policy (its record) was
    allowed to let through, of `expected`: 1 - its `confidence` target
    of them (`confidence_scale`); 0 in any other mode."""
    budget = policy.get("budget")
    if policy.get("mode") != "confidence" or not isinstance(budget, int | float):
        return 0.0
    scale = policy.get("confidence_scale")
    target = confidence_target(float(budget), float(scale) if scale else 1.0)
    return (1.0 - target) * expected


@dataclass(frozen=True)
class MissEstimate:
    """The share of failures trimming let through over `builds` plans."""

    builds: int
    caught: int
    explored_failures: int
    missed: float  # estimated failures over the budget that did not run
    rate: float | None  # None: no failure seen, nothing to estimate from
    low: float | None
    high: float | None

    def as_json(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 6)

        return {
            "builds": self.builds,
            "failures_caught": self.caught,
            "explored_failures": self.explored_failures,
            "estimated_missed": round(self.missed, 6),
            "miss_rate": rounded(self.rate),
            "miss_rate_low": rounded(self.low),
            "miss_rate_high": rounded(self.high),
        }


def poisson_cdf(count: int, mean: float) -> float:
    """P(X <= count) for X Poisson with this mean (summed in log space)."""
    if mean <= 0:
        return 1.0
    log_mean = math.log(mean)
    terms = [i * log_mean - mean - math.lgamma(i + 1) for i in range(count + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


def _solve(count: int, target: float) -> float:
    """The mean at which P(X <= count) = target (it falls as the mean grows)."""
    low, high = 0.0, max(10.0, 2.0 * count + 10.0)
    while poisson_cdf(count, high) > target:
        high *= 2
    for _ in range(100):
        middle = (low + high) / 2
        if poisson_cdf(count, middle) > target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def poisson_interval(count: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact (Garwood) interval of a Poisson mean from one count."""
    alpha = 1.0 - level
    low = 0.0 if count == 0 else _solve(count - 1, 1.0 - alpha / 2)
    return low, _solve(count, alpha / 2)


def _mean_weight(tallies: Sequence[Tally]) -> float | None:
    """The mean 1/p of the tests over the budget, by how many each plan dropped."""
    dropped = sum(t.dropped for t in tallies if 0 < t.exploration_rate < 1)
    if dropped == 0:
        return None
    return (
        math.fsum(t.dropped / t.exploration_rate for t in tallies if 0 < t.exploration_rate < 1)
        / dropped
    )


def estimate(tallies: Iterable[Tally], level: float = LEVEL) -> MissEstimate:
    """The window's estimate (see the module's docstring)."""
    window = list(tallies)
    caught = sum(t.caught for t in window)
    k = sum(t.explored_failures for t in window)
    weight_sum = math.fsum(t.explored_weight for t in window)
    weight = weight_sum / k if k else _mean_weight(window)
    missed = weight_sum - k
    if weight is None:
        # Nothing over the budget went unrun: nothing was missed.
        rate = 0.0 if caught else None
        return MissEstimate(len(window), caught, k, 0.0, rate, rate, rate)
    elsewhere = caught - k  # caught outside the exploration sample

    def rate_at(count: float) -> float | None:
        total = elsewhere + count * weight
        return count * (weight - 1.0) / total if total > 0 else None

    low, high = poisson_interval(k, level)
    rate = rate_at(k) if k or elsewhere else None
    if rate is None:
        return MissEstimate(len(window), caught, k, missed, None, None, None)
    return MissEstimate(len(window), caught, k, missed, rate, rate_at(low), rate_at(high))


def ceiling_of(policy: Mapping[str, Any], configured: float | None = None) -> float | None:
    """The share of failures a mode promises to let through at most: the
    repository's `miss_ceiling`, else 1 - t for `confidence` t, else
    DEFAULT_MISS_CEILING; None for `order` (nothing dropped, nothing promised)."""
    mode = policy.get("mode")
    if mode in (None, "order"):
        return None
    if configured is not None:
        return configured
    if mode == "confidence" and policy.get("budget") is not None:
        return max(0.0, 1.0 - float(policy["budget"]))
    return DEFAULT_MISS_CEILING


def escalation(found: MissEstimate, ceiling: float | None) -> str | None:
    """Why trimming must stop for now, or None (see the module's docstring)."""
    if ceiling is None or found.low is None or found.rate is None or found.high is None:
        return None
    if found.low <= ceiling:
        return None
    return (
        f"trimming let through an estimated {found.rate:.1%} of the failures over the last "
        f"{found.builds} evaluated builds (95% interval {found.low:.1%} to {found.high:.1%}), "
        f"more than the {ceiling:.1%} promised"
    )


@dataclass(frozen=True)
class CalibrationTally:
    """One evaluated plan's calibration evidence: which scorer served it
    (the model's id; None: the heuristic) and its `tally_bins`."""

    scorer: int | None
    bins: Sequence[Sequence[float]]

    @classmethod
    def of_evaluation(cls, evaluation: Mapping[str, Any]) -> CalibrationTally | None:
        """None for an evaluation made before plans were tallied so."""
        bins = evaluation.get("calibration_bins")
        if not isinstance(bins, list):
            return None
        scorer = evaluation.get("model_id")
        return cls(scorer if isinstance(scorer, int) else None, bins)


@dataclass(frozen=True)
class CalibrationCheck:
    """The expected calibration error of what `builds` plans served."""

    builds: int
    rows: float  # the tests that ran, weighted as tallied
    ece: float | None
    # The lower bound of its 95% interval, resampling the plans
    # (calibration.binned_ece_low): what escalation reads.
    ece_low: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "calibration_builds": self.builds,
            "calibration_rows": round(self.rows, 3),
            "calibration_error": None if self.ece is None else round(self.ece, 6),
            "calibration_error_low": None if self.ece_low is None else round(self.ece_low, 6),
        }


def calibration_check(tallies: Iterable[CalibrationTally | None]) -> CalibrationCheck:
    """Over `tallies` (newest first; None: not tallied, skipped), those of
    the newest one's scorer (see the module's docstring)."""
    window = [t for t in tallies if t is not None]
    if not window:
        return CalibrationCheck(0, 0.0, None)
    scorer = window[0].scorer
    mine = [t.bins for t in window if t.scorer == scorer]
    ece, rows = calibration.binned_ece(mine)
    return CalibrationCheck(len(mine), rows, ece, calibration.binned_ece_low(mine, LEVEL))


def calibration_ceiling_of(
    policy: Mapping[str, Any], configured: float | None = None
) -> float | None:
    """The calibration error a repository escalates above: its
    `calibration_ceiling`, else DEFAULT_CALIBRATION_CEILING; None for
    `order` (nothing dropped, nothing to escalate)."""
    if policy.get("mode") in (None, "order"):
        return None
    return DEFAULT_CALIBRATION_CEILING if configured is None else configured


def calibration_escalation(found: CalibrationCheck, ceiling: float | None) -> str | None:
    """Why trimming must stop for now on calibration drift, or None."""
    if ceiling is None or found.ece is None or found.builds < MIN_CALIBRATION_BUILDS:
        return None
    low = found.ece if found.ece_low is None else found.ece_low
    if low <= ceiling:
        return None
    return (
        f"calibration error {found.ece:.3f} over the last {found.builds} evaluated builds "
        f"(95% interval from {low:.3f}) is above {ceiling:g}"
    )


def expansion_share(tallies: Iterable[Tally]) -> float:
    """The share of the tests over the budget that expansions ran over
    the window (`Policy.expansion_share`): what the budget pays for them.
    A window not yet full counts its missing builds as builds that did not
    expand (one expansion among the first builds is not a habit). Below 1:
    a window where every build expanded still leaves the budget something
    to keep."""
    ran = dropped = builds = 0
    for tally in tallies:
        ran += tally.expanded
        dropped += tally.dropped
        builds += 1
    if not ran:
        return 0.0
    per_build = (ran + dropped) / builds
    return min(MAX_EXPANSION_SHARE, ran / (per_build * max(builds, WINDOW_BUILDS)))


def expansion_catch(tallies: Iterable[Tally]) -> float:
    """The share of the failures over the budget that expansions ran, over
    the window (`Policy.expansion_catch`): those an expansion ran, counted,
    against them plus the failures over the budget of the builds that did
    not expand, estimated from their exploration samples (each failure
    found with probability p standing for 1/p). At most
    MAX_EXPANSION_CATCH: the estimate rests on a few explored failures."""
    caught = beyond = 0.0
    for tally in tallies:
        if tally.expanded:
            caught += tally.expanded_failures
        else:
            beyond += tally.explored_weight
    return min(MAX_EXPANSION_CATCH, caught / (caught + beyond)) if caught else 0.0


# `confidence` t aims to let through this share of 1 - t over the window:
# inside the promise by a margin, so that noise does not carry it across.
CONFIDENCE_AIM = 0.9


def confidence_scale(tallies: Iterable[Tally], target: float) -> float:
    """`Policy.confidence_scale` for `confidence` t = `target`: how far each
    plan may go past 1 - t so that, over the window, the expected failures
    let through are CONFIDENCE_AIM * (1 - t) of all expected failures.

    Each plan keeps at least t of its own expected failures; the window as
    a whole keeps more wherever the forced tests (new, recently failed)
    already hold more than t, a full run or an escalated build drops
    nothing, and a prefix stops short of its allowance. The window's plans
    let through L expected failures of the A they were allowed: a share
    L / A. Allowing each plan (1 - t) * s of its own, with
    s = CONFIDENCE_AIM * A / L (A counted at the scales those plans had),
    lets through CONFIDENCE_AIM * (1 - t) of the whole if that share holds.
    1 without a `confidence` plan in the window, and within
    policy.CONFIDENCE_SCALES. The probabilities are calibrated
    (scheduler.risk.calibration), so what they expect is what comes."""
    allowed = let_through = 0.0
    for tally in tallies:
        allowed += tally.allowance
        let_through += tally.expected_let_through
    low, high = CONFIDENCE_SCALES
    if allowed <= 0 or target >= 1:
        return 1.0
    if let_through <= 0:
        return high
    return min(high, max(low, CONFIDENCE_AIM * allowed / let_through))


def watched_failure_rate(tallies: Iterable[Tally]) -> float:
    """Failures per watched test over the window (`Policy.watched_failure_rate`)."""
    watched = failures = 0
    for tally in tallies:
        watched += tally.watched
        failures += tally.watched_failures
    return failures / watched if watched else 0.0


def reasons(*found: str | None) -> str | None:
    """The escalations that hold, in one reason (None: none holds)."""
    held = [reason for reason in found if reason]
    return "; ".join(held) if held else None


def tally_of(
    *,
    selected: Sequence[bool] | Any,
    propensity: Sequence[float] | Any,
    failed: Sequence[bool] | Any,
    exploration_rate: float,
    expanded: int = 0,
    watched: int = 0,
    watched_failures: int = 0,
    expanded_failures: int = 0,
    probability: Sequence[float] | Any = None,
    policy: Mapping[str, Any] | None = None,
) -> Tally:
    """One build's tally from its decision and what failed (every test's
    outcome known, as in a backtest: a test not selected did not run);
    `expanded` tests ran because the build expanded (propensity 1). With
    each test's `probability` and the plan's `policy` (its record), what
    the plan expected, let through and was allowed to (`allowance_of`),
    as plan evaluation records them."""
    caught = explored_failures = dropped = 0
    weight = 0.0
    for chosen, p, fail in zip(selected, propensity, failed, strict=True):
        if not chosen:
            dropped += 1
            continue
        if fail:
            caught += 1
            if p < 1.0:
                explored_failures += 1
                weight += 1.0 / p
    expected = let_through = 0.0
    if probability is not None:
        p_of = [float(p) for p in probability]
        expected = math.fsum(p_of)
        let_through = math.fsum(p for p, chosen in zip(p_of, selected, strict=True) if not chosen)
    return Tally(
        caught,
        explored_failures,
        weight,
        exploration_rate,
        dropped,
        expanded,
        watched,
        watched_failures,
        expanded_failures,
        expected,
        let_through,
        allowance_of(policy or {}, expected),
    )
