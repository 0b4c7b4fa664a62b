"""The score of a repository that has no trained model yet: a fixed blend of
what predicts failures best without learning (recently failed first, then
failure rate), plus the signals a new change gives (its own file changed, a
function or class it is named after changed, a test new to riskrank). Not a
calibrated probability: plans say so."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from scheduler.risk.features import FeatureMatrix

# feature -> weight; NaN counts as 0.
WEIGHTS = {
    "last_failed": 0.45,
    "fail_rate_5": 0.2,
    "fail_rate_all": 0.1,
    "own_file_changed": 0.15,
    # Below a failure in the last run (a test still red stays first), above
    # its own file changing: the change touched what it is named after.
    "symbol_named": 0.3,
    "is_new": 0.1,
}
BASE = 0.01


def heuristic_scores(matrix: FeatureMatrix) -> npt.NDArray[np.float64]:
    score = np.full(len(matrix.tests), BASE, dtype=np.float64)
    for name, weight in WEIGHTS.items():
        score += weight * np.nan_to_num(matrix.column(name).astype(np.float64), nan=0.0)
    return np.clip(score, 0.0, 1.0)


# --- the simple orderings a model must beat --------------------------------------
# Scores whose order is the ordering's (ties: the order given); the registry
# reports each beside a candidate model, and benchmarks compare with them.

NEVER = 1e9  # builds since the last failure of a test that never failed


def _column(matrix: FeatureMatrix, name: str, missing: float) -> npt.NDArray[np.float64]:
    values = matrix.column(name).astype(np.float64)
    result: npt.NDArray[np.float64] = np.where(np.isnan(values), missing, values)
    return result


def recently_failed_first(matrix: FeatureMatrix) -> npt.NDArray[np.float64]:
    """Fewest builds since the last failure first (never failed last); ties
    by the failure rate."""
    since = _column(matrix, "builds_since_failure", NEVER)
    return -since + _column(matrix, "fail_rate_all", 0.0) * 1e-3


def failure_rate(matrix: FeatureMatrix) -> npt.NDArray[np.float64]:
    return _column(matrix, "fail_rate_all", 0.0)


def recent_failure_rate(matrix: FeatureMatrix) -> npt.NDArray[np.float64]:
    """Failure rate over the last 5 runs, ties by the rate over all runs."""
    return _column(matrix, "fail_rate_5", 0.0) + _column(matrix, "fail_rate_all", 0.0) * 1e-3


HEURISTICS: dict[str, Callable[[FeatureMatrix], npt.NDArray[np.float64]]] = {
    "recently failed first": recently_failed_first,
    "failure rate": failure_rate,
    "failure rate, last 5": recent_failure_rate,
    "riskrank heuristic": heuristic_scores,
}
