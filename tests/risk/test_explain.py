"""Reasons a person can read."""

import math

import numpy as np

from scheduler.risk.explain import heuristic_reasons_of, sentence, sentences
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


def test_sentences_of_a_plan_are_each_rows_sentence() -> None:
    """Formatting each distinct sentence once changes no row's sentence."""
    values = np.zeros((5, len(FEATURE_NAMES)), dtype=np.float32)
    values[:, FEATURE_NAMES.index("fail_rate_5")] = [0.4, 0.4, 0.2, np.nan, 0.4]
    values[:, FEATURE_NAMES.index("log_runs")] = np.log1p([12, 12, 3, 0, 4])
    values[:, FEATURE_NAMES.index("duration_mean")] = [2.34, 0.05, np.nan, 1.0, 2.34]
    values[:, FEATURE_NAMES.index("path_distance")] = [np.nan, 0.0, 2.0, np.nan, 1.0]
    matrix = FeatureMatrix(tests=tuple("abcde"), values=values)
    reasons = [
        ["fail_rate_5", "duration_mean"],
        ["fail_rate_5", "duration_mean"],
        ["path_distance", "last_failed"],
        [],
        ["fail_rate_5", "path_distance"],
    ]
    expected = [
        sentence(names, dict(zip(FEATURE_NAMES, row.tolist(), strict=True)))
        for names, row in zip(reasons, values, strict=True)
    ]
    assert sentences(reasons, matrix) == expected
    assert expected[:3] == [
        "Failed 2 of its last 5 runs; takes 2.3 s",
        "Failed 2 of its last 5 runs; takes under 0.1 s",
        "It is 2 directory steps from the change; failed in its last run",
    ]
