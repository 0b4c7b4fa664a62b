"""Two orderings of the same builds compared build by build (pure): the
per-build differences of a measure (APFD), their mean with a percentile
bootstrap interval, and how many builds each side won.

A mean difference alone cannot tell a better model from noise: a few builds
with many failures move it either way. The registry promotes a candidate
only when the interval's lower bound is above 0, so "ahead" means ahead on
builds resampled from the ones it was compared on, not on one lucky draw."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt

Floats: TypeAlias = npt.NDArray[np.float64]

CONFIDENCE: Final = 0.95
RESAMPLES: Final = 10_000
SEED: Final = 12
# Differences closer to 0 than this are ties (APFDs of the same order can
# differ in the last bits).
TIE: Final = 1e-12
# Resampled means are drawn this many values at a time, so that a long
# history does not hold RESAMPLES x builds indices at once.
_CHUNK: Final = 2_000_000


class ComparisonError(ValueError):
    """Differences that cannot be compared (not paired, not finite)."""


@dataclass(frozen=True)
class PairedComparison:
    """Per-build differences of a measure (one side minus the other) over
    ``builds`` builds: their mean, the percentile bootstrap interval of the
    mean at ``confidence``, and the builds won, lost and tied."""

    builds: int
    mean_difference: float | None
    low: float | None
    high: float | None
    wins: int
    losses: int
    ties: int
    confidence: float = CONFIDENCE
    resamples: int = RESAMPLES
    seed: int = SEED

    @property
    def ahead(self) -> bool:
        """Ahead only when the whole interval is above 0."""
        return self.low is not None and self.low > 0.0

    def phrase(self) -> str:
        """ "+0.0040 [-0.0020, +0.0100] over 120 builds"."""
        if self.mean_difference is None or self.low is None or self.high is None:
            return "no build to compare on"
        plural = "" if self.builds == 1 else "s"
        return (
            f"{self.mean_difference:+.4f} [{self.low:+.4f}, {self.high:+.4f}] "
            f"over {self.builds} build{plural}"
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_interval(
    values: npt.ArrayLike,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of ``values``: the
    (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of the means of
    ``resamples`` samples drawn with replacement (a fixed seed: the same
    values give the same interval)."""
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1 or data.size == 0:
        raise ComparisonError("the bootstrap needs a non-empty one-dimensional array")
    if not np.isfinite(data).all():
        raise ComparisonError("the bootstrap needs finite values")
    if not 0.0 < confidence < 1.0:
        raise ComparisonError(f"confidence must be between 0 and 1, got {confidence}")
    if resamples < 1:
        raise ComparisonError(f"resamples must be positive, got {resamples}")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    step = max(1, _CHUNK // data.size)
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        drawn = rng.integers(0, data.size, size=(stop - start, data.size))
        means[start:stop] = data[drawn].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def paired_comparison(
    ours: npt.ArrayLike,
    theirs: npt.ArrayLike,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> PairedComparison:
    """Build i of ``ours`` against build i of ``theirs`` (the same builds,
    in the same order)."""
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(theirs, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ComparisonError(f"paired values must be two equal vectors, got {a.shape}, {b.shape}")
    differences: Floats = a - b
    if differences.size == 0:
        return PairedComparison(0, None, None, None, 0, 0, 0, confidence, resamples, seed)
    low, high = bootstrap_interval(
        differences, confidence=confidence, resamples=resamples, seed=seed
    )
    return PairedComparison(
        builds=int(differences.size),
        mean_difference=float(differences.mean()),
        low=low,
        high=high,
        wins=int((differences > TIE).sum()),
        losses=int((differences < -TIE).sum()),
        ties=int((np.abs(differences) <= TIE).sum()),
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )
