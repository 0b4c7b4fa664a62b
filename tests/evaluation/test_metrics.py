"""The effectiveness measures: hand-computed builds, the written definitions
of scheduler.evaluation.metrics' docstring checked literally on random builds,
and the optimal order never beaten."""

import math

import numpy as np
import pytest

from scheduler.evaluation import metrics
from scheduler.evaluation.metrics import (
    apfd,
    apfd_from_positions,
    apfdc,
    caught_at_tests,
    caught_at_time,
    coleman_selection,
    count_in_budget,
    first_failure_position,
    log_loss,
    napfd,
    napfd_of_selection,
    optimal_order,
    order_by_scores,
    prefix_selection,
    recall_at_tests,
    recall_at_time,
    roc_auc,
    time_to_first_failure,
)

T, F = True, False
SHARES = (0.1, 0.2, 0.33, 0.5, 0.8, 1.0)

# --- APFD ------------------------------------------------------------------------


def test_apfd_by_hand() -> None:
    # n = 5, m = 2, failures at 2 and 4: 1 - 6/10 + 1/10.
    assert apfd([F, T, F, T, F]) == pytest.approx(0.5)
    # Failures at 1 and 2: 1 - 3/10 + 1/10.
    assert apfd([T, T, F, F, F]) == pytest.approx(0.8)
    # Failures last: 1 - 9/10 + 1/10.
    assert apfd([F, F, F, T, T]) == pytest.approx(0.2)
    assert apfd(np.array([0, 1, 0, 1, 0])) == pytest.approx(0.5)


def test_apfd_of_a_single_test() -> None:
    assert apfd([T]) == pytest.approx(0.5)
    assert apfd([F]) is None


@pytest.mark.parametrize("n", [1, 2, 5, 100])
def test_apfd_when_every_test_fails_is_one_half(n: int) -> None:
    assert apfd([T] * n) == pytest.approx(0.5)


def test_apfd_without_failures_or_tests_is_none() -> None:
    assert apfd([F, F, F]) is None
    assert apfd([]) is None


def test_apfd_worked_example_of_the_paper() -> None:
    # The five tests and ten faults of Rothermel et al.'s example (as
    # reconstructed here: which test reveals which fault), and the APFD the
    # paper gives for three of its orders: 50%, 64% and 84%.
    reveals = {
        "A": {1, 5},
        "B": {1, 5, 6, 7},
        "C": {1, 2, 3, 4, 5, 6, 7},
        "D": {5},
        "E": {8, 9, 10},
    }

    def first_positions(order: str) -> list[int]:
        return [
            next(position for position, test in enumerate(order, 1) if fault in reveals[test])
            for fault in range(1, 11)
        ]

    assert apfd_from_positions(first_positions("ABCDE"), 5) == pytest.approx(0.50)
    assert apfd_from_positions(first_positions("EDCBA"), 5) == pytest.approx(0.64)
    assert apfd_from_positions(first_positions("CEBAD"), 5) == pytest.approx(0.84)


def test_apfd_from_positions_refuses_positions_outside_the_suite() -> None:
    assert apfd_from_positions([], 3) is None
    with pytest.raises(ValueError, match="between 1 and n"):
        apfd_from_positions([0], 3)
    with pytest.raises(ValueError, match="between 1 and n"):
        apfd_from_positions([4], 3)


# --- APFDc -----------------------------------------------------------------------


def test_apfdc_by_hand() -> None:
    # Failures at 2 and 3 of durations 1, 2, 3 (total 6, m = 2):
    # (5 - 2/2) + (3 - 3/2) = 5.5, over 6 * 2.
    assert apfdc([F, T, T], [1.0, 2.0, 3.0]) == pytest.approx(5.5 / 12)
    # The same failures with the long test first find them later in time.
    assert apfdc([F, T, T], [3.0, 2.0, 1.0]) == pytest.approx((3 - 1 + 1 - 0.5) / 12)


def test_apfdc_with_equal_durations_is_apfd() -> None:
    failed = [F, T, F, F, T, T, F]
    assert apfdc(failed, [2.5] * 7) == pytest.approx(apfd(failed))


def test_apfdc_when_every_duration_is_zero_is_apfd() -> None:
    failed = [F, T, F, T, F]
    assert apfdc(failed, [0.0] * 5) == apfd(failed)
    assert apfdc([T], [0.0]) == pytest.approx(0.5)


def test_apfdc_with_some_zero_durations() -> None:
    # A free failing test first: all of the build's time is still ahead.
    assert apfdc([T, F], [0.0, 5.0]) == pytest.approx(1.0)
    # A free failing test last: found once all the time is spent.
    assert apfdc([F, T], [5.0, 0.0]) == pytest.approx(0.0)


def test_apfdc_single_test_all_failing_and_none_failing() -> None:
    assert apfdc([T], [3.0]) == pytest.approx(0.5)
    # Every test failing: (10 - 1/2) + (9 - 7/2) + (2 - 2/2) = 16, over 10 * 3;
    # shortest first does better, (10 - 1/2) + (9 - 2/2) + (7 - 7/2) = 21.
    assert apfdc([T, T, T], [1.0, 7.0, 2.0]) == pytest.approx(16 / 30)
    assert apfdc([T, T, T], [1.0, 2.0, 7.0]) == pytest.approx(21 / 30)
    assert apfdc([T, T, T], [2.0, 2.0, 2.0]) == pytest.approx(0.5)
    assert apfdc([F, F], [1.0, 2.0]) is None


# --- NAPFD -----------------------------------------------------------------------


def test_napfd_by_hand() -> None:
    failed = [F, T, F, T]
    durations = [4.0, 1.0, 5.0, 1.0]  # total 11
    # 0.6 of 11 s = 6.6 s: tests 1 and 2 run (5 s), test 3 (5 s) does not fit
    # and is skipped, test 4 (1 s) still fits and runs third.
    assert coleman_selection(durations, 6.6).tolist() == [T, T, F, T]
    # Both faults found, at ranks 2 and 3: 1 - 5/8 + 1/8.
    assert napfd(failed, durations, 0.6) == pytest.approx(0.5)
    # 0.5 of 11 s = 5.5 s: tests 1 and 2 run, 3 and 4 do not (5 + 5, 5 + 1 > 5.5).
    # p = 1/2, rank 2: 1/2 - 2/8 + (1/2)/8.
    assert napfd(failed, durations, 0.5) == pytest.approx(0.3125)
    # 0.1 of 11 s = 1.1 s: test 1 is skipped, test 2 runs first, 3 and 4 do not.
    # p = 1/2, rank 1: 1/2 - 1/8 + (1/2)/8.
    assert coleman_selection(durations, 1.1).tolist() == [F, T, F, F]
    assert napfd(failed, durations, 0.1) == pytest.approx(0.4375)


def test_napfd_with_an_empty_budget_finds_nothing() -> None:
    assert napfd([F, T, T], [1.0, 2.0, 3.0], 0.0) == 0.0


def test_napfd_with_an_empty_budget_still_runs_free_tests() -> None:
    # A test of duration 0 fits in any budget: 1 - 1/2 + 1/4, as APFD.
    assert napfd([T, F], [0.0, 3.0], 0.0) == pytest.approx(0.75)
    assert napfd([T, F], [0.0, 0.0], 0.0) == apfd([T, F])


def test_napfd_with_a_budget_that_fits_everything_is_apfd() -> None:
    failed = [F, T, F, T, T, F]
    durations = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]  # sums to 2.1 only approximately
    assert napfd(failed, durations, 1.0) == pytest.approx(apfd(failed))
    assert coleman_selection(durations, 2.1).all()


def test_napfd_single_test_all_failing_and_none_failing() -> None:
    assert napfd([T], [2.0], 1.0) == pytest.approx(0.5)
    assert napfd([T], [2.0], 0.5) == 0.0
    assert napfd([T, T, T, T], [1.0, 1.0, 1.0, 1.0], 1.0) == pytest.approx(0.5)
    # Half the time: two of four run, p = 1/2, ranks 1 and 2: 1/2 - 3/16 + 1/16.
    assert napfd([T, T, T, T], [1.0, 1.0, 1.0, 1.0], 0.5) == pytest.approx(0.375)
    assert napfd([F, F], [1.0, 1.0], 0.5) is None


def test_napfd_of_selection_counts_ranks_among_tests_that_ran() -> None:
    # Ran: 1, 3, 4; the failure at 4 has rank 3; the one at 2 is missed.
    # n = 4, m = 2, p = 1/2: 1/2 - 3/8 + 1/16.
    assert napfd_of_selection([F, T, F, T], [T, F, T, T]) == pytest.approx(0.1875)


# --- budgets ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "share", "count"),
    [
        (10, 0.2, 2),
        (10, 0.33, 4),
        (10, 0.25, 3),
        (30, 0.1, 3),  # 0.1 * 30 is 3.0000000000000004 in floating point
        (3, 0.33, 1),
        (100, 0.33, 33),
        (5, 0.01, 1),  # any budget above 0 runs at least one test
        (5, 0.0, 0),
        (5, 1.0, 5),
        (0, 0.5, 0),
    ],
)
def test_count_in_budget(n: int, share: float, count: int) -> None:
    assert count_in_budget(n, share) == count


def test_recall_at_tests_by_hand() -> None:
    failed = [T, F, F, F, T, F, F, F, T, F]
    assert recall_at_tests(failed, 0.2) == pytest.approx(1 / 3)
    assert recall_at_tests(failed, 0.33) == pytest.approx(1 / 3)  # first 4 tests
    assert recall_at_tests(failed, 0.5) == pytest.approx(2 / 3)
    assert recall_at_tests(failed, 0.0) == 0.0
    assert recall_at_tests(failed, 1.0) == 1.0
    assert recall_at_tests([F, F], 0.5) is None
    assert recall_at_tests([T], 0.01) == 1.0


def test_recall_at_time_stops_at_the_first_test_that_does_not_fit() -> None:
    failed = [F, T, F, T]
    durations = [4.0, 1.0, 5.0, 1.0]  # total 11
    assert prefix_selection(durations, 6.6).tolist() == [T, T, F, F]
    # Where NAPFD's rule skips test 3 and runs test 4, the prefix stops.
    assert recall_at_time(failed, durations, 0.6) == pytest.approx(0.5)
    assert recall_at_time(failed, durations, 0.3) == 0.0
    assert recall_at_time(failed, durations, 1.0) == 1.0
    assert recall_at_time(failed, durations, 0.0) == 0.0
    assert recall_at_time([T, F], [0.0, 1.0], 0.0) == 1.0  # a free test fits
    assert recall_at_time([F, F], [1.0, 1.0], 0.5) is None


def test_caught_at_a_budget() -> None:
    failed = [F, F, F, T]
    durations = [1.0, 1.0, 1.0, 1.0]
    assert caught_at_tests(failed, 0.5) is False
    assert caught_at_tests(failed, 1.0) is True
    assert caught_at_time(failed, durations, 0.8) is False
    assert caught_at_time(failed, durations, 1.0) is True
    assert caught_at_tests([F, F], 1.0) is None
    assert caught_at_time([F, F], [1.0, 1.0], 1.0) is None


def test_first_failure() -> None:
    assert first_failure_position([F, F, T, T]) == 3
    assert first_failure_position([T]) == 1
    assert first_failure_position([F, F]) is None
    assert first_failure_position([]) is None
    assert time_to_first_failure([F, F, T, T], [1.0, 2.0, 4.0, 8.0]) == 7.0
    assert time_to_first_failure([T], [0.0]) == 0.0
    assert time_to_first_failure([F], [1.0]) is None


# --- orders ----------------------------------------------------------------------


def test_order_by_scores_highest_first_ties_in_given_order() -> None:
    assert order_by_scores([0.9, 0.5, 0.9, 0.1]).tolist() == [0, 2, 1, 3]
    assert order_by_scores([0.0, 0.0, 0.0]).tolist() == [0, 1, 2]
    assert order_by_scores([]).tolist() == []
    assert order_by_scores([-0.0, 0.0, -1.0]).tolist() == [0, 1, 2]


def test_order_by_scores_breaks_ties_by_the_lower_tie_break_value() -> None:
    scores = [0.9, 0.5, 0.9, 0.1, 0.9]
    durations = [3.0, 1.0, 1.0, 1.0, 1.0]
    # Shortest first among the 0.9s; 2 and 4 are equal in both, so 2 first.
    assert order_by_scores(scores, tie_break=durations).tolist() == [2, 4, 0, 1, 3]


def test_order_by_scores_pessimistic_and_optimistic_ties() -> None:
    scores = np.array([0.5, 0.5, 0.5, 0.2])
    failed = np.array([T, F, F, T])
    pessimistic = order_by_scores(scores, tie_break=failed)
    optimistic = order_by_scores(scores, tie_break=~failed)
    assert pessimistic.tolist() == [1, 2, 0, 3]
    assert optimistic.tolist() == [0, 1, 2, 3]
    # Failures at 3 and 4, then at 1 and 4: 1 - 7/8 + 1/8 and 1 - 5/8 + 1/8.
    assert apfd(failed[pessimistic]) == pytest.approx(0.25)
    assert apfd(failed[optimistic]) == pytest.approx(0.5)


def test_order_by_scores_is_deterministic_for_many_ties() -> None:
    rng = np.random.default_rng(11)
    scores = rng.integers(0, 3, size=1000).astype(float)
    first = order_by_scores(scores)
    assert np.array_equal(first, order_by_scores(scores.copy()))
    # Within each score, the given order.
    for value in (2.0, 1.0, 0.0):
        block = first[scores[first] == value]
        assert np.array_equal(block, np.sort(block))
    assert np.all(np.diff(scores[first]) <= 0)


def test_optimal_order_failing_first_shortest_first() -> None:
    failed = [F, T, F, T, T]
    durations = [1.0, 5.0, 0.5, 2.0, 2.0]
    assert optimal_order(failed, durations).tolist() == [3, 4, 1, 2, 0]


# --- the definitions, literally, on random builds ---------------------------------


def random_builds(count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    builds = []
    for _ in range(count):
        n = int(rng.integers(1, 40))
        failed = rng.random(n) < rng.choice([0.05, 0.2, 0.6, 1.0])
        durations = np.round(rng.exponential(3.0, n), 2)
        durations[rng.random(n) < 0.1] = 0.0  # some free tests
        builds.append((failed, durations))
    return builds


def literal_apfd(failed: list[bool]) -> float | None:
    n, m = len(failed), sum(failed)
    if m == 0:
        return None
    tf = [i + 1 for i, f in enumerate(failed) if f]
    return 1 - sum(tf) / (n * m) + 1 / (2 * n)


def literal_apfdc(failed: list[bool], t: list[float]) -> float | None:
    n, m = len(failed), sum(failed)
    if m == 0:
        return None
    if sum(t) == 0:
        return literal_apfd(failed)
    tf = [i + 1 for i, f in enumerate(failed) if f]
    top = sum(sum(t[j - 1] for j in range(i, n + 1)) - t[i - 1] / 2 for i in tf)
    return top / (sum(t) * m)


def literal_napfd(failed: list[bool], t: list[float], share: float) -> float | None:
    # COLEMAN's loop (coleman4hcs.evaluation.EvaluationMetric.process_test_suite).
    n, m = len(failed), sum(failed)
    if m == 0:
        return None
    available = share * sum(t)
    rank, spent, ranks = 1, 0.0, []
    for f, d in zip(failed, t, strict=True):
        if spent + d <= available + 1e-9 * sum(t):
            if f:
                ranks.append(rank)
            spent += d
            rank += 1
    p = len(ranks) / m
    return p - sum(ranks) / (n * m) + p / (2 * n)


def literal_recall_at_time(failed: list[bool], t: list[float], share: float) -> float | None:
    m = sum(failed)
    if m == 0:
        return None
    available = share * sum(t) + 1e-9 * sum(t)
    found, spent = 0, 0.0
    for f, d in zip(failed, t, strict=True):
        spent += d
        if spent > available:
            break
        found += f
    return found / m


def same(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (
        a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    )


def test_measures_follow_their_written_definitions() -> None:
    for failed, durations in random_builds(500, seed=2024):
        f, t = failed.tolist(), durations.tolist()
        assert same(apfd(failed), literal_apfd(f))
        assert same(apfdc(failed, durations), literal_apfdc(f, t))
        for share in SHARES:
            assert same(napfd(failed, durations, share), literal_napfd(f, t, share))
            assert same(
                recall_at_time(failed, durations, share), literal_recall_at_time(f, t, share)
            )
            m = sum(f)
            expected = None if m == 0 else sum(f[: math.ceil(round(share * len(f), 9))]) / m
            assert same(recall_at_tests(failed, share), expected)


def test_napfd_with_everything_in_budget_is_apfd_and_apfdc_with_equal_times_is_apfd() -> None:
    for failed, _ in random_builds(300, seed=5):
        ones = np.ones(failed.size)
        assert same(napfd(failed, ones * 0.7, 1.0), apfd(failed))
        assert same(apfdc(failed, ones * 0.7), apfd(failed))


def defined(value: float | None) -> float:
    assert value is not None
    return value


def test_optimal_order_is_never_beaten() -> None:
    rng = np.random.default_rng(7)
    slack = 1e-12
    for failed, durations in random_builds(300, seed=99):
        if not failed.any():
            continue
        best = optimal_order(failed, durations)
        f, t = failed[best], durations[best]
        for _ in range(10):
            order = rng.permutation(failed.size)
            g, u = failed[order], durations[order]
            assert defined(apfd(f)) + slack >= defined(apfd(g))
            assert defined(apfdc(f, t)) + slack >= defined(apfdc(g, u))
            assert defined(first_failure_position(f)) <= defined(first_failure_position(g))
            ttf_best, ttf = time_to_first_failure(f, t), time_to_first_failure(g, u)
            assert defined(ttf_best) <= defined(ttf) + slack
            for share in SHARES:
                assert defined(napfd(f, t, share)) + slack >= defined(napfd(g, u, share))
                assert defined(recall_at_tests(f, share)) >= defined(recall_at_tests(g, share))
                best_recall, recall = recall_at_time(f, t, share), recall_at_time(g, u, share)
                assert defined(best_recall) >= defined(recall)


def test_a_random_order_averages_about_one_half() -> None:
    # The expected APFD of a random order is 1/2 (each failure's expected
    # position is (n + 1) / 2): a sanity check of the formula's orientation.
    rng = np.random.default_rng(3)
    failed = np.zeros(50, dtype=bool)
    failed[:5] = True
    values = [apfd(failed[rng.permutation(50)]) for _ in range(4000)]
    assert np.mean(values) == pytest.approx(0.5, abs=0.01)


# --- scores ----------------------------------------------------------------------


def test_roc_auc_by_hand_with_ties() -> None:
    # Pairs (failing, passing): 0.8 vs 0.8 is a tie (1/2), 0.8 vs 0.1 (1),
    # 0.3 vs 0.8 (0), 0.3 vs 0.1 (1): 2.5 of 4.
    assert roc_auc([1, 0, 1, 0], [0.8, 0.8, 0.3, 0.1]) == pytest.approx(0.625)
    assert roc_auc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert roc_auc([1, 1], [0.1, 0.2]) is None
    assert roc_auc([0, 0], [0.1, 0.2]) is None
    assert roc_auc([], []) is None


def test_roc_auc_is_the_share_of_pairs_ranked_right() -> None:
    rng = np.random.default_rng(17)
    for _ in range(200):
        n = int(rng.integers(2, 60))
        labels = rng.random(n) < 0.3
        scores = rng.integers(0, 5, size=n).astype(float)  # many ties
        positives, negatives = scores[labels], scores[~labels]
        if positives.size == 0 or negatives.size == 0:
            assert roc_auc(labels, scores) is None
            continue
        wins = (positives[:, None] > negatives[None, :]).sum()
        ties = (positives[:, None] == negatives[None, :]).sum()
        expected = (wins + ties / 2) / (positives.size * negatives.size)
        assert roc_auc(labels, scores) == pytest.approx(expected, abs=1e-12)


def test_log_loss() -> None:
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(1e-15))
    assert log_loss([0], [0.0]) == pytest.approx(0.0, abs=1e-12)
    assert log_loss([], []) is None


# --- refusals --------------------------------------------------------------------


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="booleans"):
        apfd([0, 2, 1])
    with pytest.raises(ValueError, match="one-dimensional"):
        apfd([[True]])
    with pytest.raises(ValueError, match="shape"):
        apfdc([T, F], [1.0])
    with pytest.raises(ValueError, match="not negative"):
        apfdc([T, F], [1.0, -1.0])
    with pytest.raises(ValueError, match="not negative"):
        napfd([T], [math.nan], 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        napfd([T], [1.0], 1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        recall_at_tests([T], -0.1)
    with pytest.raises(ValueError, match="not be negative"):
        coleman_selection([1.0], -1.0)
    with pytest.raises(ValueError, match="finite"):
        order_by_scores([0.5, math.nan])
    with pytest.raises(ValueError, match="same length"):
        order_by_scores([0.5, 0.2], tie_break=[1.0])
    with pytest.raises(ValueError, match="same length"):
        roc_auc([1, 0], [0.5])


def test_budget_slack_is_tiny() -> None:
    # Rounding is absorbed, a real overrun is not.
    assert metrics.BUDGET_SLACK <= 1e-6
    assert prefix_selection([1.0, 1.0], 1.999).tolist() == [T, F]


def test_order_by_keys_sorts_lexicographically_then_as_given() -> None:
    # first key lowest first; ties by the second; then the order given
    assert metrics.order_by_keys([1, 0, 1, 0], [2, 5, 1, 5]).tolist() == [1, 3, 2, 0]
    assert metrics.order_by_keys([-1.0, -0.0, -1.0]).tolist() == [0, 2, 1]
    assert metrics.order_by_keys(np.zeros(0)).tolist() == []
    with pytest.raises(ValueError, match="same length"):
        metrics.order_by_keys([1, 2], [1])
    with pytest.raises(ValueError, match="at least one key"):
        metrics.order_by_keys()
