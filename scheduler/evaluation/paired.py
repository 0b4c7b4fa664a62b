"""Is one ordering better than another, or is the difference noise? (pure)

Two orderings scored on the same builds give one difference per build (the
first's value minus the second's). Their mean says which is ahead on
average; a percentile bootstrap over builds says how far that mean could move
with other builds of the same kind: resample the builds with replacement
(each resample as many builds as there are), take each resample's mean, and
read the 2.5th and 97.5th percentiles of those means (Efron & Tibshirani,
"An Introduction to the Bootstrap", 1993, ch. 13). The seed is fixed, so the
same differences always give the same interval.

The verdict is "ahead" only when the whole interval is above 0 (its lower
bound > 0), "behind" when it is below 0 (upper bound < 0), and "tie"
otherwise: a mean above 0 whose interval reaches 0 is not a win. Wins,
losses and ties count the builds where the difference is above, below, or
within `TIE` of 0, so that a mean carried by a few builds shows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

AHEAD = "ahead"
BEHIND = "behind"
TIE_VERDICT = "tie"
# A per-build difference this close to 0 is a tie (rounding, not a win).
TIE = 1e-12
RESAMPLES = 10_000
SEED = 12
CONFIDENCE = 0.95
# Resamples drawn per step: bounds the memory (CHUNK times builds indices).
CHUNK = 500


@dataclass(frozen=True)
class Paired:
    """The paired comparison of two orderings over `builds` builds; None
    throughout when there is no build to compare on."""

    builds: int
    mean_difference: float | None
    low: float | None
    high: float | None
    wins: int
    losses: int
    ties: int
    verdict: str | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_interval(
    differences: npt.ArrayLike,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of `differences`."""
    values = np.asarray(differences, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("differences must be a non-empty one-dimensional array")
    if not np.isfinite(values).all():
        raise ValueError("differences must be finite")
    if resamples < 1 or not 0.0 < confidence < 1.0:
        raise ValueError("resamples must be 1 or more and confidence between 0 and 1")
    rng = np.random.default_rng(seed)
    n = values.size
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, CHUNK):
        size = min(CHUNK, resamples - start)
        picks = rng.integers(0, n, size=(size, n))
        means[start : start + size] = values[picks].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    # A constant difference gives identical means; a rounding in the mean
    # must not put the bound a hair outside the values themselves.
    return (
        float(np.clip(low, values.min(), values.max())),
        float(np.clip(high, values.min(), values.max())),
    )


def verdict(low: float, high: float) -> str:
    if low > 0.0:
        return AHEAD
    if high < 0.0:
        return BEHIND
    return TIE_VERDICT


def compare(
    differences: npt.ArrayLike,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> Paired:
    """The paired comparison of per-build `differences` (first minus second;
    for a measure where lower is better, pass second minus first)."""
    values = np.asarray(differences, dtype=np.float64)
    if values.size == 0:
        return Paired(0, None, None, None, 0, 0, 0, None)
    low, high = bootstrap_interval(values, resamples=resamples, seed=seed, confidence=confidence)
    return Paired(
        builds=int(values.size),
        mean_difference=float(values.mean()),
        low=low,
        high=high,
        wins=int((values >= TIE).sum()),
        losses=int((values <= -TIE).sum()),
        ties=int((np.abs(values) < TIE).sum()),
        verdict=verdict(low, high),
    )
