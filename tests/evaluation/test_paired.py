"""The paired comparison of two orderings: bootstrap interval, wins, losses,
ties and the verdict, on differences whose answer is known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.evaluation import paired


def test_a_constant_difference_gives_a_zero_width_interval() -> None:
    found = paired.compare([0.25] * 7)
    assert found == paired.Paired(
        builds=7,
        mean_difference=0.25,
        low=0.25,
        high=0.25,
        wins=7,
        losses=0,
        ties=0,
        verdict="ahead",
    )
    behind = paired.compare([-0.5] * 3)
    assert (behind.low, behind.high, behind.verdict) == (-0.5, -0.5, "behind")
    assert (behind.wins, behind.losses, behind.ties) == (0, 3, 0)


def test_symmetric_differences_straddle_zero() -> None:
    found = paired.compare([1.0, -1.0] * 10)
    assert found.mean_difference == 0.0
    assert found.low is not None
    assert found.high is not None
    assert found.low < 0.0 < found.high
    assert (found.wins, found.losses, found.ties, found.verdict) == (10, 10, 0, "tie")


def test_two_builds_give_the_extremes() -> None:
    # Resampling [0, 1] gives means 0, 1/2 and 1 with chances 1/4, 1/2, 1/4:
    # the 2.5th percentile is 0 and the 97.5th is 1. A lower bound of
    # exactly 0 is not "ahead", though the mean (1/2) is above 0.
    found = paired.compare([0.0, 1.0])
    assert (found.low, found.high) == (0.0, 1.0)
    assert found.mean_difference == 0.5
    assert (found.wins, found.losses, found.ties, found.verdict) == (1, 0, 1, "tie")


def test_ties_are_differences_within_a_rounding() -> None:
    found = paired.compare([1e-13, -1e-13, 0.0, 0.5, -2e-12])
    assert (found.wins, found.losses, found.ties) == (1, 1, 3)
    zeros = paired.compare(np.zeros(4))
    assert (zeros.low, zeros.high, zeros.verdict, zeros.ties) == (0.0, 0.0, "tie", 4)


def test_the_interval_narrows_with_more_builds_and_is_seeded() -> None:
    rng = np.random.default_rng(3)
    few = rng.normal(0.01, 0.05, size=20)
    many = rng.normal(0.01, 0.05, size=2000)
    narrow = paired.bootstrap_interval(many)
    wide = paired.bootstrap_interval(few)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    # The standard error of the mean of 2,000 draws of sd 0.05 is about
    # 0.00112: a 95% interval is about 2 x 1.96 x 0.00112 = 0.0044 wide.
    assert narrow[1] - narrow[0] == pytest.approx(0.0044, rel=0.1)
    assert narrow[0] <= float(many.mean()) <= narrow[1]
    assert paired.bootstrap_interval(few) == wide  # the same seed, the same interval
    assert paired.bootstrap_interval(few, seed=1) != wide


def test_no_build_and_bad_input() -> None:
    empty = paired.compare([])
    assert empty == paired.Paired(0, None, None, None, 0, 0, 0, None)
    assert empty.as_json()["verdict"] is None
    with pytest.raises(ValueError, match="non-empty"):
        paired.bootstrap_interval([])
    with pytest.raises(ValueError, match="finite"):
        paired.bootstrap_interval([0.1, float("nan")])
    with pytest.raises(ValueError, match="resamples"):
        paired.bootstrap_interval([0.1], resamples=0)


def test_verdict_words() -> None:
    assert paired.verdict(0.001, 0.01) == "ahead"
    assert paired.verdict(0.0, 0.01) == "tie"
    assert paired.verdict(-0.01, 0.01) == "tie"
    assert paired.verdict(-0.01, 0.0) == "tie"
    assert paired.verdict(-0.01, -0.001) == "behind"
