"""Reasons a person can read."""

import math

import numpy as np

from scheduler.risk.columns import LinkColumns
from scheduler.risk.explain import CoFailure, heuristic_reasons_of, sentence, sentences
from scheduler.risk.features import (
    FEATURE_NAMES,
    FeatureMatrix,
    StrongestCoFailure,
    strongest_cofailure,
)


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
    assert sentence([], {}) == "No sign of risk in its history or in this change"


def test_unknown_values_read_as_zero() -> None:
    assert sentence(["path_distance"], {"path_distance": math.nan}) == (
        "It is 0 directory steps from the change"
    )


def test_heuristic_reasons_in_order_of_strength() -> None:
    values = np.zeros((4, len(FEATURE_NAMES)), dtype=np.float32)
    values[:, FEATURE_NAMES.index("fail_rate_5")] = [0.2, 0.0, np.nan, 0.2]
    values[:, FEATURE_NAMES.index("last_failed")] = [1.0, 0.0, np.nan, 0.0]
    values[:, FEATURE_NAMES.index("builds_since_failure")] = [0.0, np.nan, np.nan, 3.0]
    values[:, FEATURE_NAMES.index("symbol_named")] = [1.0, 0.0, np.nan, np.nan]
    values[:, FEATURE_NAMES.index("is_new")] = [0.0, 0.0, 1.0, 0.0]
    matrix = FeatureMatrix(tests=("a", "b", "c", "d"), values=values)
    # What the heuristic reads, not what it does not (the failure rates).
    assert heuristic_reasons_of(matrix) == [
        ["symbol_named", "last_failed"],
        [],
        ["is_new"],
        ["builds_since_failure"],
    ]


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


READER = CoFailure("src/io/Reader.java", 3)


def test_sentence_names_the_changed_file_that_failed_with_the_test() -> None:
    features = {"fail_rate_5": 0.4, "log_runs": math.log1p(12), "cofail_sum": 5.0}
    assert sentence(["fail_rate_5", "cofail_sum"], features, READER) == (
        "Failed 2 of its last 5 runs; "
        "src/io/Reader.java changed and failed together with it 3 times"
    )
    # The strongest association and the sum read as one phrase, said once.
    assert sentence(["cofail_max", "last_failed", "cofail_sum"], features, READER) == (
        "src/io/Reader.java changed and failed together with it 3 times; failed in its last run"
    )
    assert sentence(["cofail_max"], {}, CoFailure("Makefile", 1)) == (
        "Makefile changed and failed together with it 1 time"
    )
    assert sentence(["cofail_max"], {}, CoFailure("", 0)) == (
        "No changed file has failed together with it yet"
    )
    # Without one, the changed files in general.
    assert sentence(["cofail_max"], {}) == "A changed file has failed together with it before"


def links(*rows: tuple[int, int, int, int]) -> LinkColumns:
    tests, paths, ran, failed = zip(*rows, strict=True) if rows else ((), (), (), ())
    return LinkColumns.from_sequences(
        test_index=tests, path_index=paths, changed_together=ran, failed_together=failed
    )


def test_strongest_cofailure_per_test() -> None:
    # (test row, path, changed together, failed together)
    strongest = strongest_cofailure(
        links(
            (0, 2, 9, 1),
            (0, 1, 20, 4),  # most failures, though the weakest ratio
            (0, 0, 5, 3),
            (2, 1, 6, 2),  # ties on failures: the higher ratio (fewer builds together)
            (2, 0, 8, 2),
            (3, 2, 4, 1),  # ties on both: the earlier path
            (3, 1, 4, 1),
            (4, 0, 7, 0),  # linked, never failed together
        ),
        6,
    )
    assert strongest.path_index.tolist() == [1, -1, 1, 1, 0, -1]
    assert strongest.failed_together.tolist() == [4.0, 0.0, 2.0, 1.0, 0.0, 0.0]
    none = strongest_cofailure(links(), 2)
    assert none.path_index.tolist() == [-1, -1]
    assert none.failed_together.tolist() == [0.0, 0.0]


def test_plan_sentences_name_each_tests_strongest_file() -> None:
    """Model reasons and heuristic reasons alike name the row's own file."""
    values = np.zeros((4, len(FEATURE_NAMES)), dtype=np.float32)
    values[:, FEATURE_NAMES.index("fail_rate_5")] = [0.4, 0.0, 0.0, 0.0]
    values[:, FEATURE_NAMES.index("log_runs")] = np.log1p([12, 3, 3, 3])
    values[:, FEATURE_NAMES.index("cofail_sum")] = [4.0, 1.0, 0.0, 2.0]
    matrix = FeatureMatrix(tests=tuple("abcd"), values=values)
    paths = ("docs/index.md", "src/io/Reader.java", "src/io/Writer.java")
    strongest = StrongestCoFailure(
        path_index=np.array([1, 2, -1, 1]), failed_together=np.array([3.0, 1.0, 0.0, 2.0])
    )
    reasons = [
        ["fail_rate_5", "cofail_sum"],  # the heuristic's signals
        ["cofail_max", "age_days"],  # a model's top contributions
        ["cofail_max"],
        ["cofail_sum"],
    ]
    assert sentences(reasons, matrix, paths=paths, strongest=strongest) == [
        "Failed 2 of its last 5 runs; "
        "src/io/Reader.java changed and failed together with it 3 times",
        "src/io/Writer.java changed and failed together with it 1 time; is 0 days old",
        "No changed file has failed together with it yet",
        "src/io/Reader.java changed and failed together with it 2 times",
    ]
