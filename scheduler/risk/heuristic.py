"""The score of a repository that has no trained model yet: a fixed blend of
what predicts failures best without learning (recently failed first, then
failure rate), plus the signals a new change gives (its own file changed, a
test new to riskrank). Not a calibrated probability: plans say so."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from scheduler.risk.features import FeatureMatrix

# feature -> weight; NaN counts as 0.
WEIGHTS = {
    "last_failed": 0.45,
    "fail_rate_5": 0.2,
    "fail_rate_all": 0.1,
    "own_file_changed": 0.15,
    "is_new": 0.1,
}
BASE = 0.01


def heuristic_scores(matrix: FeatureMatrix) -> npt.NDArray[np.float64]:
    score = np.full(len(matrix.tests), BASE, dtype=np.float64)
    for name, weight in WEIGHTS.items():
        score += weight * np.nan_to_num(matrix.column(name).astype(np.float64), nan=0.0)
    return np.clip(score, 0.0, 1.0)
