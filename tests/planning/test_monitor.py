"""The live estimate of what trimming misses and escalation: pure, with
figures worked out by hand."""

from __future__ import annotations

import pytest

from scheduler.planning import monitor
from scheduler.planning.monitor import MissEstimate, Tally, estimate, poisson_interval


def test_the_poisson_interval_is_garwoods() -> None:
    # Garwood's exact 95% limits, as tabulated (0: 0 to 3.689; 1: 0.0253 to 5.572).
    assert poisson_interval(0) == (0.0, pytest.approx(3.688879, abs=1e-6))
    assert poisson_interval(1) == (
        pytest.approx(0.025318, abs=1e-6),
        pytest.approx(5.571643, abs=1e-6),
    )
    assert poisson_interval(5) == (
        pytest.approx(1.623486, abs=1e-6),
        pytest.approx(11.668332, abs=1e-6),
    )


def test_explored_failures_stand_for_what_the_budget_dropped() -> None:
    # Two plans: 6 failures caught in all, 2 of them in a 5% exploration sample.
    tallies = [
        Tally(
            caught=4, explored_failures=1, explored_weight=20.0, exploration_rate=0.05, dropped=90
        ),
        Tally(
            caught=2, explored_failures=1, explored_weight=20.0, exploration_rate=0.05, dropped=90
        ),
    ]
    found = estimate(tallies)
    # Each explored failure stands for 20 over the budget, 19 not run: 38 missed.
    assert (found.builds, found.caught, found.explored_failures) == (2, 6, 2)
    assert found.missed == pytest.approx(38.0)
    assert found.rate == pytest.approx(38 / (6 + 38))
    low, high = poisson_interval(2)
    # The rate at k explored failures: 19 k / (4 caught elsewhere + 20 k).
    assert found.low == pytest.approx(19 * low / (4 + 20 * low))
    assert found.high == pytest.approx(19 * high / (4 + 20 * high))


def test_no_explored_failure_is_a_rate_of_0_with_an_upper_bound() -> None:
    tallies = [
        Tally(
            caught=10, explored_failures=0, explored_weight=0.0, exploration_rate=0.1, dropped=30
        ),
        Tally(
            caught=0, explored_failures=0, explored_weight=0.0, exploration_rate=0.05, dropped=10
        ),
    ]
    found = estimate(tallies)
    assert (found.rate, found.low, found.missed) == (0.0, 0.0, 0.0)
    # The weight is the mean 1/p over the dropped tests: (30 * 10 + 10 * 20) / 40.
    weight = (30 * 10 + 10 * 20) / 40
    _, high = poisson_interval(0)
    assert found.high == pytest.approx(high * (weight - 1) / (10 + high * weight))


def test_nothing_dropped_nothing_missed_and_no_failure_nothing_known() -> None:
    full = Tally(
        caught=3, explored_failures=0, explored_weight=0.0, exploration_rate=1.0, dropped=0
    )
    assert estimate([full]) == MissEstimate(1, 3, 0, 0.0, 0.0, 0.0, 0.0)
    quiet = Tally(
        caught=0, explored_failures=0, explored_weight=0.0, exploration_rate=0.05, dropped=9
    )
    assert estimate([quiet]).rate is None
    assert estimate([]).rate is None


def test_a_tally_from_a_plan_evaluation() -> None:
    evaluation = {
        "failures_caught": 2,
        "failures_in_exploration": 1,
        "estimated_failures_beyond_budget": 5.0,
        "dropped": 2,
        "policy": {"mode": "fraction", "budget": 0.5, "exploration_rate": 0.2},
    }
    assert Tally.of_evaluation(evaluation) == Tally(2, 1, 5.0, 0.2, 2)
    escalated = evaluation | {"policy": {"exploration_rate": 0.2, "escalation": "why"}}
    assert Tally.of_evaluation(escalated).exploration_rate == 1.0


def test_an_expanded_plan_lets_nothing_through_and_its_expansion_is_paid_for() -> None:
    evaluation = {
        "failures_caught": 2,
        "failures_in_exploration": 1,
        "failures_dropped_but_ran": 3,
        "estimated_failures_beyond_budget": 0.0,
        "dropped": 8,
        "ran_dropped": 8,
        "expanded": True,
        "policy": {"mode": "fraction", "budget": 0.5, "exploration_rate": 0.2},
    }
    tally = Tally.of_evaluation(evaluation)
    assert tally == Tally(caught=5, explored_failures=0, explored_weight=0.0,
                          exploration_rate=0.2, dropped=0, expanded=8,
                          expanded_failures=4)  # fmt: skip
    # A full window: one build in 100 expanded, running its 8 dropped tests,
    # the 99 others dropped 8 each and ran none: 8 of 800.
    quiet = Tally(caught=0, explored_failures=0, explored_weight=0.0, exploration_rate=0.2,
                  dropped=8)  # fmt: skip
    assert monitor.expansion_share([tally] + [quiet] * 99) == 0.01
    assert monitor.expansion_share([quiet] * 100) == 0.0
    # A window not yet full: the missing builds count as builds that did
    # not expand (8 of 100 builds of 8).
    assert monitor.expansion_share([tally, quiet]) == 0.01
    assert monitor.expansion_share([tally] * 100) == monitor.MAX_EXPANSION_SHARE


def test_the_share_of_the_failures_over_the_budget_expansions_caught() -> None:
    """An expanded build ran 6 failures over the budget; two builds that did
    not expand found one failure each in their exploration samples, drawn
    at p = 0.2 and 0.5: 5 + 2 = 7 failures over the budget estimated there.
    Expansions caught 6 of 13; counted as at most MAX_EXPANSION_CATCH."""
    expanded = Tally(8, 0, 0.0, 0.05, 0, expanded=40, expanded_failures=6)
    explored = [Tally(3, 1, 5.0, 0.2, 40), Tally(2, 1, 2.0, 0.5, 40)]
    assert monitor.expansion_catch([expanded, *explored]) == pytest.approx(6 / 13)
    assert monitor.expansion_catch([expanded, *explored * 2]) == pytest.approx(6 / 20)
    assert monitor.expansion_catch([expanded, explored[1]]) == monitor.MAX_EXPANSION_CATCH
    assert monitor.expansion_catch(explored) == 0.0
    evaluation = {"expanded": True, "failures_dropped_but_ran": 4, "failures_in_exploration": 1,
                  "ran_dropped": 40}  # fmt: skip
    assert Tally.of_evaluation(evaluation).expanded_failures == 5


def test_the_watched_tests_failure_rate_over_the_window() -> None:
    def watching(watched: int, failures: int) -> Tally:
        return Tally(0, 0, 0.0, 0.05, 10, watched=watched, watched_failures=failures)

    assert monitor.watched_failure_rate([watching(40, 3), watching(60, 2)]) == 0.05
    assert monitor.watched_failure_rate([watching(0, 0)]) == 0.0
    evaluation = {"watched": 40, "watched_failures": 3, "dropped": 10}
    assert Tally.of_evaluation(evaluation).watched_failures == 3


def test_a_tally_from_a_decision_and_its_outcomes() -> None:
    tally = monitor.tally_of(
        selected=[True, True, True, False, False],
        propensity=[1.0, 0.05, 0.05, 0.05, 0.05],
        failed=[True, True, False, True, False],
        exploration_rate=0.05,
    )
    assert tally == Tally(caught=2, explored_failures=1, explored_weight=20.0,
                          exploration_rate=0.05, dropped=2)  # fmt: skip


def test_each_mode_promises_its_ceiling() -> None:
    assert monitor.ceiling_of({"mode": "order"}) is None
    assert monitor.ceiling_of({"mode": "fraction", "budget": 0.33}) == 0.10
    assert monitor.ceiling_of({"mode": "time", "budget": 600}) == 0.10
    assert monitor.ceiling_of({"mode": "confidence", "budget": 0.9}) == pytest.approx(0.1)
    assert monitor.ceiling_of({"mode": "confidence", "budget": 0.9}, 0.02) == 0.02


def test_escalation_needs_evidence_above_the_ceiling() -> None:
    above = MissEstimate(100, 50, 8, 152.0, 0.75, 0.12, 0.9)
    reason = monitor.escalation(above, 0.10)
    assert reason == (
        "trimming let through an estimated 75.0% of the failures over the last 100 "
        "evaluated builds (95% interval 12.0% to 90.0%), more than the 10.0% promised"
    )
    # The estimate above the ceiling but its lower bound not: no evidence yet.
    assert monitor.escalation(MissEstimate(100, 50, 1, 19.0, 0.27, 0.01, 0.6), 0.10) is None
    assert monitor.escalation(above, None) is None
    assert monitor.escalation(MissEstimate(0, 0, 0, 0.0, None, None, None), 0.10) is None


def test_calibration_tallies_add_up_per_bin_and_weigh_the_exploration_sample() -> None:
    from scheduler.risk.calibration import TALLY_EDGES, binned_ece, tally_bins

    # 0.0005 falls in the first bin, 0.3 and 0.4 in [0.2, 0.5), 1.0 in the last.
    bins = tally_bins([0.0005, 0.3, 0.4, 1.0], [False, True, False, True], [1, 1, 20, 1])
    assert len(bins) == len(TALLY_EDGES) - 1
    assert bins[0] == [1.0, 0.0005, 0.0]
    assert bins[8] == [21.0, 0.3 + 20 * 0.4, 1.0]
    assert bins[9] == [1.0, 1.0, 1.0]
    assert sum(row[0] for row in bins) == 23.0
    # Two plans' tallies: |0.001 - 0| + |8.3 - 1| * 2 + |1 - 1| * 2, over 46 rows.
    ece, rows = binned_ece([bins, bins])
    assert rows == 46.0
    assert ece == pytest.approx((2 * 0.0005 + 2 * 7.3) / 46)
    assert binned_ece([]) == (None, 0.0)


def test_the_calibration_window_is_the_newest_scorers_and_needs_enough_builds() -> None:
    bad = [[10.0, 3.0, 0.0]] + [[0.0, 0.0, 0.0]] * 9  # served 0.3, nothing failed
    good = [[10.0, 3.0, 3.0]] + [[0.0, 0.0, 0.0]] * 9
    old = [monitor.CalibrationTally(None, bad)] * 50
    # A retrained model (id 4): only its own plans count, older ones are the heuristic's.
    found = monitor.calibration_check([monitor.CalibrationTally(4, good), None, *old])
    assert (found.builds, found.rows, found.ece) == (1, 10.0, 0.0)
    drifted = monitor.calibration_check(old)
    assert (drifted.builds, drifted.ece) == (50, pytest.approx(0.3))
    assert monitor.calibration_escalation(drifted, 0.02) == (
        "calibration error 0.300 over the last 50 evaluated builds (95% interval from 0.300) "
        "is above 0.02"
    )
    assert monitor.calibration_escalation(drifted, 0.5) is None
    assert monitor.calibration_escalation(drifted, None) is None  # ordering only
    few = monitor.calibration_check(old[: monitor.MIN_CALIBRATION_BUILDS - 1])
    assert monitor.calibration_escalation(few, 0.02) is None
    assert monitor.reasons(None, "b", "c") == "b; c"
    assert monitor.reasons(None, None) is None


def test_one_build_that_broke_at_once_is_no_drift_but_every_build_off_is() -> None:
    """A build is the unit of evidence: 99 plans served 0.01 to 100 tests
    each and saw one failure each (calibrated), one build broke 30 of its
    tests at once. The window's error is above 0.002, but its interval's
    lower bound is not: resampled without that build, the probabilities
    hold. Every build a little off (two failures each) is drift, and the
    bound says so."""
    from scheduler.risk.calibration import binned_ece, binned_ece_low

    def plan(failures: float) -> list[list[float]]:
        bins = [[0.0, 0.0, 0.0] for _ in range(10)]
        bins[4] = [100.0, 1.0, failures]  # 100 tests at 0.01, in [0.01, 0.02)
        return bins

    burst = [plan(30.0), *[plan(1.0)] * 99]
    ece, _ = binned_ece(burst)
    assert ece == pytest.approx(29 / 10_000)
    low = binned_ece_low(burst)
    assert low is not None
    assert low < 0.001
    found = monitor.calibration_check(monitor.CalibrationTally(None, bins) for bins in burst)
    assert (found.ece, found.ece_low) == (pytest.approx(ece), low)
    assert monitor.calibration_escalation(found, 0.002) is None
    off = [plan(2.0)] * 100
    assert binned_ece_low(off) == pytest.approx(0.01)
    drift = monitor.calibration_check(monitor.CalibrationTally(None, bins) for bins in off)
    assert monitor.calibration_escalation(drift, 0.002) == (
        "calibration error 0.010 over the last 100 evaluated builds (95% interval from 0.010) "
        "is above 0.002"
    )
    # The same window, the same bound; nothing to resample, nothing to bound.
    assert binned_ece_low(burst) == low
    assert binned_ece_low([]) is None
    assert binned_ece_low([[[0.0, 0.0, 0.0]] * 10]) is None


def test_confidence_lets_the_window_use_what_the_forced_tests_left() -> None:
    """`confidence` 0.8: four plans each expected 1 failure and were allowed
    to let 0.2 through (a scale of 1); two let 0.2 through, two none (their
    forced tests held more than 0.8). Over the window 0.4 of 0.8 allowed:
    a share of 1/2. Aiming at CONFIDENCE_AIM * 0.2 of the 4 expected
    failures, each plan may now let through twice as much, times the aim."""
    used = Tally(0, 0, 0.0, 0.05, 10, expected=1.0, expected_let_through=0.2, allowance=0.2)
    held = Tally(0, 0, 0.0, 0.05, 10, expected=1.0, expected_let_through=0.0, allowance=0.2)
    scale = monitor.confidence_scale([used, used, held, held], 0.8)
    assert scale == pytest.approx(2 * monitor.CONFIDENCE_AIM)
    # At that scale, the same window lets through what it aims at: stable.
    scaled = Tally(0, 0, 0.0, 0.05, 10, expected=1.0, expected_let_through=0.2 * scale,
                   allowance=0.2 * scale)  # fmt: skip
    held_at_scale = Tally(0, 0, 0.0, 0.05, 10, expected=1.0, allowance=0.2 * scale)
    window = [scaled, scaled, held_at_scale, held_at_scale]
    assert monitor.confidence_scale(window, 0.8) == pytest.approx(scale)
    # Bounded: nothing let through at all asks for the most; far too much
    # for the least; no `confidence` plan (no allowance) leaves 1.
    assert monitor.confidence_scale([held] * 4, 0.8) == 2.0
    over = Tally(0, 0, 0.0, 0.05, 10, expected=1.0, expected_let_through=0.9, allowance=0.2)
    assert monitor.confidence_scale([over] * 4, 0.8) == 0.5
    assert monitor.confidence_scale([Tally(0, 0, 0.0, 0.05, 10, expected=1.0)], 0.8) == 1.0
    assert monitor.confidence_scale([], 0.8) == 1.0


def test_a_confidence_tally_from_a_plan_evaluation_and_from_a_decision() -> None:
    """The evaluation's expected failures, those let through, and the
    allowance its policy gave: (1 - target) of the expected, the target
    1 - (1 - t) * scale (0.8 at a scale of 1.5: 0.7)."""
    evaluation = {
        "dropped": 3,
        "expected_failures": 2.0,
        "expected_let_through": 0.25,
        "policy": {"mode": "confidence", "budget": 0.8, "confidence_scale": 1.5},
    }
    tally = Tally.of_evaluation(evaluation)
    assert (tally.expected, tally.expected_let_through) == (2.0, 0.25)
    assert tally.allowance == pytest.approx(0.3 * 2.0)
    fraction = evaluation | {"policy": {"mode": "fraction", "budget": 0.5}}
    assert Tally.of_evaluation(fraction).allowance == 0.0
    # An expanded build let nothing through, whatever it dropped.
    assert Tally.of_evaluation(evaluation | {"expanded": True}).expected_let_through == 0.0
    decided = monitor.tally_of(
        selected=[True, False, False],
        propensity=[1.0, 0.05, 0.05],
        failed=[False, False, False],
        exploration_rate=0.05,
        probability=[0.5, 0.25, 0.125],
        policy={"mode": "confidence", "budget": 0.8},
    )
    assert (decided.expected, decided.expected_let_through) == (0.875, 0.375)
    assert decided.allowance == pytest.approx(0.175)
