"""Calibration of a scorer's scores on held-out builds (scheduler.risk.calibration)."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.risk import calibration
from scheduler.risk.calibration import Calibration

# Per decile of the score, the observed failure rate may differ from the mean
# predicted probability by this much (absolute) on builds the map never saw:
# rows of one decile number 10,000 with rates up to 0.3, whose standard error
# is at most 0.005.
TOLERANCE = 0.015


def history(
    seed: int, builds: int = 400, tests: int = 500
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic history with known rates: each row's true failure
    probability, a score that orders the rows as it does but is not a
    probability (0.01 plus weights, as the heuristic), the outcomes drawn
    from the truth, and the build index."""
    rng = np.random.default_rng(seed)
    truth = rng.beta(0.3, 10.0, builds * tests)
    score = np.clip(0.01 + 0.5 * np.sqrt(truth), 0.0, 1.0)
    failed = rng.random(truth.size) < truth
    build = np.repeat(np.arange(builds), tests)
    return truth, score, failed, build


def test_a_score_that_is_no_probability_is_calibrated_per_decile_on_later_builds() -> None:
    _, score, failed, build = history(1)
    fitted_on = build < 200
    fitted = calibration.fit(score[fitted_on], failed[fitted_on], build[fitted_on])
    assert fitted is not None
    later = ~fitted_on
    before = calibration.reliability(score[later], failed[later])
    after = calibration.reliability(fitted.apply(score[later]), failed[later])
    # Uncalibrated, the top decile is 0.05 off and the mean 4 times the rate.
    assert before.ece is not None
    assert before.ece > 0.03
    assert after.ece is not None
    assert after.ece < 0.005
    for predicted, observed in zip(after.predicted, after.observed, strict=True):
        assert predicted == pytest.approx(observed, abs=TOLERANCE)
    # The error stored with the map is measured on builds its fit did not see.
    assert fitted.ece is not None
    assert fitted.ece < 0.005
    assert fitted.reliability is not None
    assert len(fitted.reliability.rows) == 10


def test_the_map_never_changes_the_order() -> None:
    _, score, failed, _build = history(2, builds=40, tests=200)
    for method in calibration.METHODS:
        fitted = (
            calibration.fit_isotonic(score.astype(float), failed.astype(float))
            if method == calibration.ISOTONIC
            else calibration.fit_platt(score.astype(float), failed.astype(float))
        )
        assert fitted is not None
        ordered = np.sort(np.unique(score))
        mapped = fitted.apply(ordered)
        assert np.all(np.diff(mapped) > 0), method  # distinct scores stay distinct
        assert mapped.min() >= 0
        assert mapped.max() <= 1


def test_isotonic_wins_where_the_rate_is_a_step() -> None:
    # The rate jumps from 0.01 to 0.4 at a score of 0.5: no sigmoid of the
    # logit fits that, the step function does, and log loss picks it.
    rng = np.random.default_rng(3)
    score = rng.random(200_000)
    rate = np.where(score < 0.5, 0.01, 0.4)
    failed = rng.random(score.size) < rate
    build = np.repeat(np.arange(200), 1000)
    fitted = calibration.fit(score, failed, build)
    assert fitted is not None
    assert fitted.method == calibration.ISOTONIC
    assert fitted.log_loss is not None
    assert fitted.log_loss["isotonic"] < fitted.log_loss["platt"]
    assert fitted.apply(np.array([0.2, 0.8])) == pytest.approx([0.01, 0.4], abs=0.01)


def test_ties_of_a_simple_ordering_stay_in_one_step() -> None:
    # A simple ordering gives every test of one of its steps the same score:
    # more distinct scores than bins, and equal scores never split.
    rng = np.random.default_rng(4)
    score = np.round(rng.random(100_000), 2) + rng.integers(0, 2, 100_000) * 1e-7 * np.arange(
        100_000
    )
    failed = rng.random(score.size) < score / 4
    fitted = calibration.fit_isotonic(score, failed.astype(float))
    assert 1 < len(fitted.knots) <= calibration.MAX_BINS
    same = np.full(5, score[0])
    assert np.ptp(fitted.apply(same)) == 0


def test_too_little_to_learn_from_gives_no_map() -> None:
    assert calibration.fit([0.1, 0.2], [True, False], [0, 1]) is None  # two builds
    assert calibration.fit([0.1] * 8, [False] * 8, [0, 1, 2, 3] * 2) is None  # no failure


def test_the_map_is_kept_as_json_and_read_back() -> None:
    _, score, failed, build = history(5, builds=40, tests=200)
    fitted = calibration.fit(score, failed, build)
    assert fitted is not None
    again = Calibration.from_json(fitted.as_json())
    assert again is not None
    assert np.array_equal(again.apply(score[:100]), fitted.apply(score[:100]))
    assert again.ece == pytest.approx(fitted.ece, abs=1e-6)
    assert Calibration.from_json({"method": "magic"}) is None
    assert Calibration.from_json(None) is None


def test_miss_risk_of_dropped_tests() -> None:
    assert calibration.expected_failures([0.1, 0.2, 0.3]) == pytest.approx(0.6)
    assert calibration.any_failure([0.1, 0.2, 0.3]) == pytest.approx(1 - 0.9 * 0.8 * 0.7)
    assert calibration.any_failure([]) == 0.0
    assert calibration.any_failure([0.5, 1.0]) == 1.0
    # Ten thousand small probabilities: not lost to rounding.
    assert calibration.any_failure([1e-6] * 10_000) == pytest.approx(1 - (1 - 1e-6) ** 10_000)


def test_the_bound_on_dropped_failures_by_hand() -> None:
    assert calibration.failures_bound([]) == 0
    assert calibration.failures_bound([0.0, 0.0]) == 0
    # One test at 0.5: P(0) = 0.5 < 0.95, P(<= 1) = 1.
    assert calibration.failures_bound([0.5]) == 1
    # 0.5 and 0.1: P(0) = 0.45, P(<= 1) = 0.45 + 0.5 * 0.9 + 0.5 * 0.1 = 0.95.
    assert calibration.failures_bound([0.5, 0.1]) == 1
    # Two tests above SERIES_MAX, multiplied in one by one: P(<= 1) = 0.19.
    assert calibration.failures_bound([0.9, 0.9]) == 2
    assert calibration.failures_bound([1.0, 1.0, 1.0]) == 3


def test_the_bound_holds_on_drawn_outcomes() -> None:
    # Ten thousand tests of a CI suite's spread of probabilities (a few
    # likely, most not): the exact law's 95% bound against 20,000 draws.
    # The bound is the smallest k with P(<= k) >= 0.95, so at least 95% of
    # the draws fall at or under it, and under 95% at or under k - 1.
    rng = np.random.default_rng(7)
    p = rng.beta(0.3, 60.0, 2_000)
    p[:3] = [0.95, 0.7, 0.4]
    bound = calibration.failures_bound(p)
    draws = (rng.random((20_000, p.size)) < p).sum(axis=1)
    assert np.mean(draws <= bound) >= 0.945
    assert np.mean(draws <= bound - 1) < 0.955
    assert bound > float(p.sum())


def test_platt_stays_finite_where_the_scores_nearly_separate_the_failures() -> None:
    # As a closed loop's refresh saw it on dune-total: 7,784 passing rows at
    # scores 0.010 to 0.030 and 8 rows at 0.26, seven of them failing. The
    # undamped fit ran to a slope of 1e12 and gave every test 1e-11, a
    # suite that "cannot fail"; Platt's smoothed targets and a damped step
    # keep a slope and probabilities the rows support.
    rng = np.random.default_rng(5)
    score = np.concatenate([0.01 + 0.02 * rng.random(7784), np.full(8, 0.26)])
    failed = np.concatenate([np.zeros(7784), np.ones(7), np.zeros(1)])
    fitted = calibration.fit_platt(score, failed)
    assert fitted is not None
    assert 0 < fitted.scale < 10
    low, high = fitted.apply(np.array([0.01, 0.26]))
    assert 1e-6 < low < 0.001  # no failure among 7,784: small, never "cannot fail"
    assert 0.5 < high < 0.95  # seven failures in eight rows
