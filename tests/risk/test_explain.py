"""Reasons a person can read."""

import math

import numpy as np

from scheduler.risk.explain import heuristic_reasons_of, sentence
from scheduler.risk.features import FEATURE_NAMES, FeatureMatrix


def test_sentence_from_features() -> None:
    features = {
        "fail_rate_5": 0.4,
        "log_runs": math.log1p(12),
        "last_failed": 1.0,
        "cofail_sum": 3.0,
        "duration_mean": 2.34,
    }
    assert sentence(["fail_rate_5", "last_failed", "cofail_sum", "duration_mean"], features) == (
        "Failed 2 of its last 5 runs; failed in its last run; "
        "changed files failed together with it 3 times; takes 2.3 s"
    )


def test_a_test_with_nothing_against_it() -> None:
    assert sentence([], {}) == "no sign of risk in its history or in this change"


def test_unknown_values_read_as_zero() -> None:
    assert sentence(["path_distance"], {"path_distance": math.nan}) == (
        "It is 0 directory steps from the change"
    )


def test_heuristic_reasons_in_order_of_strength() -> None:
    values = np.zeros((3, len(FEATURE_NAMES)), dtype=np.float32)
    values[:, FEATURE_NAMES.index("fail_rate_5")] = [0.2, 0.0, np.nan]
    values[:, FEATURE_NAMES.index("last_failed")] = [1.0, 0.0, np.nan]
    values[:, FEATURE_NAMES.index("is_new")] = [0.0, 0.0, 1.0]
    matrix = FeatureMatrix(tests=("a", "b", "c"), values=values)
    assert heuristic_reasons_of(matrix) == [["last_failed", "fail_rate_5"], [], ["is_new"]]
