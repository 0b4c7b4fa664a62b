"""The score of a repository that has no trained model yet: the order of
"new first, then recently failed" (the strongest simple ordering on most
histories), with new tests placed by how often the repository's new tests
fail, lifted by what the change says (a function or class the test is named
after changed, its own file changed).

Roughly a probability, not a calibrated one: plans serve it through the map
each training learns for it on the repository's recent builds
(scheduler.risk.calibration). Before that map: a test that
failed in its last build scores 0.17 to 0.26, one build before 0.11, ten
builds before 0.03, one that never failed 0.01; a new test the repository's
failure rate of new tests (new_test_rate, 0.12 until it has seen new tests
arrive); a changed symbol it is named after adds 0.3, its own file changing
0.15. On the shared histories' first halves, tests failed in the build after
a failure 50-90% of the time, in their first build 0-40%, and after five
quiet builds 1-5%."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from scheduler.risk.features import FeatureMatrix

# signal -> weight; each signal is a feature of the matrix (NaN counts as 0),
# but "recency" (new_or_recent for a test that ran before) and "new test"
# (new_test_rate for a test that never ran).
WEIGHTS = {
    "recency": 0.5,
    "new test": 1.0,
    # Above a failure one build ago, below one in the last build with its
    # own file changed: the change touched what it is named after.
    "symbol_named": 0.3,
    "own_file_changed": 0.15,
}
BASE = 0.01


def _feature(matrix: FeatureMatrix, name: str) -> npt.NDArray[np.float64]:
    return np.nan_to_num(matrix.column(name).astype(np.float64), nan=0.0)


def heuristic_scores(matrix: FeatureMatrix) -> npt.NDArray[np.float64]:
    is_new = _feature(matrix, "is_new")
    signals = {
        "recency": _feature(matrix, "new_or_recent") * (1.0 - is_new),
        "new test": _feature(matrix, "new_test_rate") * is_new,
        "symbol_named": _feature(matrix, "symbol_named"),
        "own_file_changed": _feature(matrix, "own_file_changed"),
    }
    score = np.full(len(matrix.tests), BASE, dtype=np.float64)
    for name, weight in WEIGHTS.items():
        score += weight * signals[name]
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
