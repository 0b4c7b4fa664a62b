"""The heuristic that scores a repository without a model: a test that
failed in its last run first, then one named after a function or class
the change touched, then one whose own file changed; reasons say which."""

import numpy as np

from scheduler.risk.explain import heuristic_reasons_of
from scheduler.risk.features import FEATURE_NAMES, FeatureMatrix
from scheduler.risk.heuristic import heuristic_scores


def matrix(rows: dict[str, dict[str, float]]) -> FeatureMatrix:
    values = np.full((len(rows), len(FEATURE_NAMES)), np.nan, dtype=np.float32)
    for row, features in enumerate(rows.values()):
        for name, value in features.items():
            values[row, FEATURE_NAMES.index(name)] = value
    return FeatureMatrix(tuple(rows), values)


def test_a_test_named_after_a_changed_symbol_comes_after_a_red_one_before_its_file() -> None:
    features = matrix(
        {
            "own file": {"own_file_changed": 1, "symbol_named": 0, "last_failed": 0},
            "named": {"own_file_changed": 0, "symbol_named": 1, "last_failed": 0},
            "red": {"own_file_changed": 0, "symbol_named": 0, "last_failed": 1},
            "quiet": {"own_file_changed": 0, "symbol_named": 0, "last_failed": 0},
            "no symbols known": {"last_failed": 0},
        }
    )
    scores = heuristic_scores(features)
    order = [features.tests[i] for i in np.argsort(-scores, kind="stable")]
    assert order == ["red", "named", "own file", "quiet", "no symbols known"]
    assert scores[3] == scores[4]  # NaN (no symbols in the change) counts as 0
    reasons = heuristic_reasons_of(features)
    assert reasons[1] == ["symbol_named"]
    assert reasons[0] == ["own_file_changed"]
