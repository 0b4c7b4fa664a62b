"""The heuristic that scores a repository without a model: "new first, then
recently failed", with new tests placed by how often the repository's new
tests fail, lifted by a changed function or class a test is named after and
by its own file changing; reasons say which."""

import numpy as np
import pytest

from scheduler.risk.columns import HistoryColumns
from scheduler.risk.explain import heuristic_reasons_of
from scheduler.risk.features import (
    FEATURE_NAMES,
    NEW_TEST_PRIOR,
    NEW_TEST_PRIOR_TESTS,
    FeatureMatrix,
    new_test_rate,
)
from scheduler.risk.heuristic import heuristic_scores

# new_or_recent of a test that failed in its last build (rate 0), and one build before.
RED = 0.5 / 1.5
ONE_BUILD_AGO = 0.5 / 2.5


def matrix(rows: dict[str, dict[str, float]], new_rate: float = NEW_TEST_PRIOR) -> FeatureMatrix:
    values = np.full((len(rows), len(FEATURE_NAMES)), np.nan, dtype=np.float32)
    values[:, FEATURE_NAMES.index("new_test_rate")] = new_rate
    for row, features in enumerate(rows.values()):
        for name, value in features.items():
            values[row, FEATURE_NAMES.index(name)] = value
    return FeatureMatrix(tuple(rows), values)


def order_of(features: FeatureMatrix) -> list[str]:
    scores = heuristic_scores(features)
    return [features.tests[i] for i in np.argsort(-scores, kind="stable")]


def test_a_test_named_after_a_changed_symbol_first_then_red_then_its_own_file() -> None:
    quiet = {"is_new": 0, "new_or_recent": 0, "own_file_changed": 0, "symbol_named": 0}
    features = matrix(
        {
            "own file": {**quiet, "own_file_changed": 1},
            "named": {**quiet, "symbol_named": 1},
            "red": {**quiet, "last_failed": 1, "builds_since_failure": 0, "new_or_recent": RED},
            "one build ago": {**quiet, "builds_since_failure": 1, "new_or_recent": ONE_BUILD_AGO},
            "quiet": quiet,
            "no symbols known": {"is_new": 0, "new_or_recent": 0},
        }
    )
    assert order_of(features) == [
        "named",
        "red",
        "own file",
        "one build ago",
        "quiet",
        "no symbols known",
    ]
    scores = heuristic_scores(features)
    assert scores[4] == scores[5]  # NaN (no symbols in the change) counts as 0
    reasons = heuristic_reasons_of(features)
    assert reasons[1] == ["symbol_named"]
    assert reasons[0] == ["own_file_changed"]
    assert reasons[2] == ["last_failed"]
    assert reasons[3] == ["builds_since_failure"]


@pytest.mark.parametrize(
    ("new_rate", "expected"),
    [
        # New tests fail 40% of the time (IOF/ROL): before a test red in its last build.
        (0.4, ["new", "red", "one build ago", "quiet"]),
        # 12% (dune-common): after it, before one that failed a build before.
        (0.12, ["red", "new", "one build ago", "quiet"]),
        # Never (druid): after every test that failed, before the quiet ones.
        (0.002, ["red", "one build ago", "new", "quiet"]),
    ],
)
def test_new_tests_go_where_the_repositorys_new_tests_failure_rate_puts_them(
    new_rate: float, expected: list[str]
) -> None:
    features = matrix(
        {
            "quiet": {"is_new": 0, "new_or_recent": 0},
            "one build ago": {"is_new": 0, "new_or_recent": ONE_BUILD_AGO},
            "new": {"is_new": 1, "new_or_recent": 1},
            "red": {"is_new": 0, "new_or_recent": RED},
        },
        new_rate,
    )
    assert order_of(features) == expected
    # A new test scores the repository's failure rate of new tests (above the base).
    assert heuristic_scores(features)[2] == pytest.approx(0.01 + new_rate)


def history(recent: list[str | None], runs: list[int | None]) -> HistoryColumns:
    n = len(recent)
    return HistoryColumns.from_sequences(
        names=[f"t{i}" for i in range(n)],
        files=[None] * n,
        runs=runs,
        failures=[None] * n,
        recent=recent,
        builds_since_failure=[None] * n,
        flips=[None] * n,
        flaky_runs=[None] * n,
        duration_mean=[None] * n,
        first_seen=[None] * n,
    )


def test_new_test_rate_reads_the_first_build_of_each_test_that_still_has_it() -> None:
    prior = NEW_TEST_PRIOR * NEW_TEST_PRIOR_TESTS
    # Newest first: t0 failed in its first build (F, the oldest letter), t1
    # errored there, t2 passed; t3's first build is out of its window (25
    # runs, 3 letters); t4 never ran.
    rate = new_test_rate(history(["PPF", "E", "FP", "FFF", None], [3, 1, 2, 25, None]))
    assert rate == pytest.approx((2 + prior) / (3 + NEW_TEST_PRIOR_TESTS))
    # With nothing to read, the prior.
    assert new_test_rate(history([None], [None])) == pytest.approx(NEW_TEST_PRIOR)
    # Many new tests that passed: close to 0.
    assert new_test_rate(history(["P"] * 990, [1] * 990)) == pytest.approx(prior / 1000)


def test_the_tests_of_the_first_report_are_not_new_tests() -> None:
    """The suite riskrank first saw (the earliest first_seen) was there
    before riskrank: 990 of its tests passing in that build say nothing of
    how the tests a change adds fare. Two tests added later, one failing in
    its first build, make the rate."""
    first, later = 1_000_000.0, 1_000_500.0
    names = 992
    columns = HistoryColumns.from_sequences(
        names=[f"t{i}" for i in range(names)],
        files=[None] * names,
        runs=[1] * names,
        failures=[None] * names,
        recent=["P"] * 990 + ["F", "P"],
        builds_since_failure=[None] * names,
        flips=[None] * names,
        flaky_runs=[None] * names,
        duration_mean=[None] * names,
        first_seen=[first] * 990 + [later, later + 60],
    )
    prior = NEW_TEST_PRIOR * NEW_TEST_PRIOR_TESTS
    assert new_test_rate(columns) == pytest.approx((1 + prior) / (2 + NEW_TEST_PRIOR_TESTS))
