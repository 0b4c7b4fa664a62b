"""The paired comparison's bootstrap: reproducible, vectorised, and the
same interval as drawing the resamples one by one."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.risk.comparison import (
    ComparisonError,
    PairedComparison,
    bootstrap_interval,
    paired_comparison,
)


def test_the_interval_is_the_percentiles_of_resampled_means() -> None:
    values = np.random.default_rng(3).normal(0.01, 0.05, size=57)
    low, high = bootstrap_interval(values, resamples=500, seed=4)
    # The same draws, one resample at a time.
    rng = np.random.default_rng(4)
    means = [values[rng.integers(0, values.size, size=values.size)].mean() for _ in range(500)]
    assert (low, high) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    assert bootstrap_interval(values, resamples=500, seed=4) == (low, high)
    assert low < values.mean() < high


def test_resamples_drawn_in_chunks_give_the_same_interval() -> None:
    # 3,000 values: the 10,000 resamples are drawn in several chunks.
    values = np.random.default_rng(1).normal(size=3000)
    low, high = bootstrap_interval(values)
    rng = np.random.default_rng(12)
    chunk = 2_000_000 // 3000
    means = np.concatenate(
        [
            values[rng.integers(0, 3000, size=(min(chunk, 10_000 - start), 3000))].mean(axis=1)
            for start in range(0, 10_000, chunk)
        ]
    )
    assert (low, high) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))


def test_paired_differences_wins_losses_and_ties() -> None:
    ours = np.array([0.9, 0.8, 0.7, 0.5, 0.6])
    theirs = np.array([0.8, 0.8, 0.9, 0.4, 0.5])
    comparison = paired_comparison(ours, theirs)
    assert (comparison.builds, comparison.wins, comparison.losses, comparison.ties) == (5, 3, 1, 1)
    assert comparison.mean_difference == pytest.approx(0.02)
    assert comparison.low is not None
    assert comparison.high is not None
    assert comparison.low < 0 < comparison.high
    assert not comparison.ahead
    assert comparison.phrase().startswith("+0.0200 [")
    assert comparison.phrase().endswith("] over 5 builds")


def test_only_a_lower_bound_above_zero_is_ahead() -> None:
    assert paired_comparison([0.9, 0.8], [0.8, 0.7]).ahead
    tie = paired_comparison([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    assert not tie.ahead
    assert tie.phrase() == "+0.0000 [+0.0000, +0.0000] over 3 builds"
    empty = paired_comparison([], [])
    assert empty == PairedComparison(0, None, None, None, 0, 0, 0)
    assert not empty.ahead
    assert empty.phrase() == "no build to compare on"


def test_refuses_what_it_cannot_compare() -> None:
    with pytest.raises(ComparisonError):
        paired_comparison([0.1, 0.2], [0.1])
    with pytest.raises(ComparisonError):
        bootstrap_interval([0.1, float("nan")])
    with pytest.raises(ComparisonError):
        bootstrap_interval([])
