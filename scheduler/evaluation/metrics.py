"""How good one build's test order was (pure functions).

Every measure sees one build through the order a plan would run its tests in:
``failed[i]`` says whether the i-th test to run failed, ``durations[i]`` how
long it took in seconds (0 allowed). Write n for the number of tests and m for
the number of failing tests. Each failing test counts as one fault: CI reports
say which tests failed, not which faults made them fail, so the test-fault
matrix of the papers is the identity here. Positions are 1-based.

Undefined values are ``None`` (never NaN), so that an evaluation can be kept
as JSON as it is. A build without a failing test (m = 0) has no APFD, APFDc,
NAPFD, recall, "caught" or first failure: nothing was there to find, and a
mean over builds should leave it out rather than count it as a 0 or a 1
(COLEMAN counts it as 1; we leave that choice to whoever averages).

APFD (Rothermel, Untch, Chu & Harrold, "Prioritizing test cases for
regression testing", IEEE TSE 27(10), 2001)::

    APFD = 1 - (TF_1 + ... + TF_m) / (n m) + 1 / (2 n)

TF_i is the position of the first test that reveals fault i, here the
position of the i-th failing test. A build of a single failing test gives
1/2, and so does a build whose tests all fail, whatever the order.

APFDc, with every fault of severity 1 (Elbaum, Malishevsky & Rothermel,
"Incorporating varying test costs and fault severities into test case
prioritization", ICSE 2001)::

    APFDc = sum over faults i of (t_TF_i + ... + t_n - t_TF_i / 2) / ((t_1 + ... + t_n) m)

With equal durations it equals APFD. When every duration is 0 the ratio is
0/0: APFDc is then APFD (every test costs the same, nothing), by definition
here.

NAPFD under a time budget, with COLEMAN's rule for what runs (Qu, Cohen &
Woolf, "Combinatorial interaction regression testing", ICSM 2007; Prado Lima
& Vergilio, "A multi-armed bandit approach for test case prioritization in
continuous integration environments", IEEE TSE 48(2), 2022, and its
``coleman4hcs.evaluation``): walk the plan in order and run each test whose
duration fits in what is left of the budget (``spent + t_i <= budget``),
skipping one that does not and going on with the next. Then::

    NAPFD = p - (TF_1 + ... + TF_m) / (n m) + p / (2 n),   p = detected / m

where TF_i counts only the tests that ran (a skipped test takes no position),
an undetected fault adds 0 to the sum, and n and m are all the build's tests
and failures, run or not. With a budget that runs everything NAPFD is APFD.
Budgets are a share of the build's total duration (0.1, 0.5, 0.8). A test
of duration 0 always fits, even in a budget of 0.

Recall at a share k of the tests: of the m failing tests, the share among the
first ``ceil(k n)`` tests of the plan (at least one test for any k > 0, all
of them at k = 1; ``k n`` is rounded to 9 decimals first, so that 0.1 of 30
tests is 3, not 4). Recall at a share k of the time: of the m failing tests,
the share among the tests whose cumulative duration, in plan order, is at most
k times the build's total duration: a prefix of the plan, stopping at the
first test that does not fit (unlike NAPFD, which skips it and goes on).
"Caught" is whether at least one failing test is within such a budget. The
first failure is the position of the first failing test; the time to the first
failure is the total duration of the tests up to and including it.

Time budgets absorb rounding: a cumulative duration fits when it is within
1e-9 of the build's total duration above the budget, so that a share of 1
runs everything however the durations add up in floating point.

`order_by_scores` and `optimal_order` turn scores into the order a plan would
run, so that every measure above can be applied to a model, a heuristic or
the best possible order. `roc_auc` and `log_loss` measure scores themselves.
"""

from __future__ import annotations

import math
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

Flags: TypeAlias = npt.NDArray[np.bool_]
Floats: TypeAlias = npt.NDArray[np.float64]
Order: TypeAlias = npt.NDArray[np.intp]

# Relative slack of time budgets: rounding must not drop a test that fits.
BUDGET_SLACK = 1e-9
# Digits k * n is rounded to before its ceiling (0.1 * 30 is 3.0000000000000004).
SHARE_DIGITS = 9


# --- inputs -----------------------------------------------------------------------


def _flags(failed: npt.ArrayLike, name: str = "failed") -> Flags:
    array = np.asarray(failed)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.dtype == np.bool_:
        return array
    if array.size and not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must hold booleans or 0 and 1")
    return array.astype(np.bool_)


def _durations(durations: npt.ArrayLike, n: int) -> Floats:
    array = np.asarray(durations, dtype=np.float64)
    if array.shape != (n,):
        raise ValueError(f"durations must have shape ({n},), got {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any():
        raise ValueError("durations must be finite and not negative")
    return array


def _scores(scores: npt.ArrayLike, name: str = "scores") -> Floats:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite")
    return array


def _share(share: float) -> float:
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"a budget share must be between 0 and 1, got {share}")
    return float(share)


def _budget(durations: Floats, share: float) -> float:
    return _share(share) * math.fsum(durations.tolist())


def _slack(durations: Floats) -> float:
    return BUDGET_SLACK * math.fsum(durations.tolist())


def _positions(failed: Flags) -> npt.NDArray[np.int64]:
    """The 1-based positions of the failing tests."""
    return np.flatnonzero(failed).astype(np.int64) + 1


# --- the APFD family --------------------------------------------------------------


def apfd_from_positions(positions: npt.ArrayLike, n: int) -> float | None:
    """APFD from the position (1-based) of the first test revealing each fault,
    for a suite of n tests; None without faults."""
    tf = np.asarray(positions, dtype=np.int64)
    if tf.ndim != 1:
        raise ValueError("positions must be one-dimensional")
    m = tf.size
    if m == 0:
        return None
    if (tf < 1).any() or (tf > n).any():
        raise ValueError(f"positions must be between 1 and n = {n}")
    return 1.0 - float(tf.sum()) / (n * m) + 1.0 / (2 * n)


def apfd(failed: npt.ArrayLike) -> float | None:
    """APFD of a build's order, each failing test one fault; None when none fails."""
    flags = _flags(failed)
    return apfd_from_positions(_positions(flags), flags.size)


def apfdc(failed: npt.ArrayLike, durations: npt.ArrayLike) -> float | None:
    """Cost-aware APFD (severities 1); APFD when every duration is 0; None
    when no test fails."""
    flags = _flags(failed)
    times = _durations(durations, flags.size)
    m = int(flags.sum())
    if m == 0:
        return None
    total = math.fsum(times.tolist())
    if total == 0.0:
        return apfd(flags)
    # Time from each test to the end of the build: t_i + ... + t_n.
    remaining = np.cumsum(times[::-1])[::-1]
    caught = remaining[flags] - times[flags] / 2.0
    return float(caught.sum()) / (total * m)


def coleman_selection(durations: npt.ArrayLike, budget_seconds: float) -> Flags:
    """Which tests run within a time budget by COLEMAN's rule: in order, each
    test that fits in what is left runs, one that does not is skipped."""
    times = _durations(durations, np.asarray(durations).size)
    if not budget_seconds >= 0.0:
        raise ValueError(f"a budget must not be negative, got {budget_seconds}")
    limit = budget_seconds + _slack(times)
    ran = np.zeros(times.size, dtype=np.bool_)
    spent = 0.0
    for index, duration in enumerate(times.tolist()):
        if spent + duration <= limit:
            spent += duration
            ran[index] = True
    return ran


def prefix_selection(durations: npt.ArrayLike, budget_seconds: float) -> Flags:
    """Which tests run within a time budget when the run stops at the first
    test that does not fit: those whose cumulative duration fits."""
    times = _durations(durations, np.asarray(durations).size)
    if not budget_seconds >= 0.0:
        raise ValueError(f"a budget must not be negative, got {budget_seconds}")
    result: Flags = np.cumsum(times) <= budget_seconds + _slack(times)
    return result


def napfd_of_selection(failed: npt.ArrayLike, ran: npt.ArrayLike) -> float | None:
    """NAPFD when only the tests flagged in ``ran`` ran, in plan order; None
    when no test fails."""
    flags = _flags(failed)
    selected = _flags(ran, "ran")
    if selected.size != flags.size:
        raise ValueError("failed and ran must have the same length")
    n, m = flags.size, int(flags.sum())
    if m == 0:
        return None
    # Ranks among the tests that ran; a test that did not run takes none.
    ranks = np.cumsum(selected)
    detected = flags & selected
    p = float(detected.sum()) / m
    return p - float(ranks[detected].sum()) / (n * m) + p / (2 * n)


def napfd(failed: npt.ArrayLike, durations: npt.ArrayLike, budget_share: float) -> float | None:
    """NAPFD with a time budget of ``budget_share`` of the build's total
    duration, COLEMAN's rule deciding what runs; None when no test fails."""
    flags = _flags(failed)
    times = _durations(durations, flags.size)
    return napfd_of_selection(flags, coleman_selection(times, _budget(times, budget_share)))


# --- budgets: recall, caught, first failure ---------------------------------------


def count_in_budget(n: int, share: float) -> int:
    """How many tests a budget of ``share`` of n tests runs: ceil(share n)."""
    return min(n, math.ceil(round(_share(share) * n, SHARE_DIGITS)))


def recall_of_selection(failed: npt.ArrayLike, selected: npt.ArrayLike) -> float | None:
    """The share of the failing tests that are selected; None when none fails."""
    flags = _flags(failed)
    chosen = _flags(selected, "selected")
    if chosen.size != flags.size:
        raise ValueError("failed and selected must have the same length")
    m = int(flags.sum())
    return None if m == 0 else float((flags & chosen).sum()) / m


def _first_tests(n: int, share: float) -> Flags:
    selected = np.zeros(n, dtype=np.bool_)
    selected[: count_in_budget(n, share)] = True
    return selected


def _within_time(times: Floats, share: float) -> Flags:
    return prefix_selection(times, _budget(times, share))


def recall_at_tests(failed: npt.ArrayLike, share: float) -> float | None:
    """Recall of failing tests among the first ceil(share n) tests."""
    flags = _flags(failed)
    return recall_of_selection(flags, _first_tests(flags.size, share))


def recall_at_time(failed: npt.ArrayLike, durations: npt.ArrayLike, share: float) -> float | None:
    """Recall of failing tests among the tests whose cumulative duration fits
    in ``share`` of the build's total duration."""
    flags = _flags(failed)
    return recall_of_selection(flags, _within_time(_durations(durations, flags.size), share))


def caught_at_tests(failed: npt.ArrayLike, share: float) -> bool | None:
    """Whether a failing build shows a failure among its first ceil(share n)
    tests; None for a build without failures."""
    recall = recall_at_tests(failed, share)
    return None if recall is None else recall > 0.0


def caught_at_time(failed: npt.ArrayLike, durations: npt.ArrayLike, share: float) -> bool | None:
    """Whether a failing build shows a failure within ``share`` of its total
    duration; None for a build without failures."""
    recall = recall_at_time(failed, durations, share)
    return None if recall is None else recall > 0.0


def first_failure_position(failed: npt.ArrayLike) -> int | None:
    """The 1-based position of the first failing test; None when none fails."""
    hits = np.flatnonzero(_flags(failed))
    return int(hits[0]) + 1 if hits.size else None


def time_to_first_failure(failed: npt.ArrayLike, durations: npt.ArrayLike) -> float | None:
    """Seconds until the first failing test has finished; None when none fails."""
    flags = _flags(failed)
    times = _durations(durations, flags.size)
    position = first_failure_position(flags)
    return None if position is None else math.fsum(times[:position].tolist())


# --- orders -----------------------------------------------------------------------


def order_by_scores(scores: npt.ArrayLike, *, tie_break: npt.ArrayLike | None = None) -> Order:
    """The indices of the tests in run order: the highest score first.

    Deterministic: among equal scores the lower ``tie_break`` value runs first
    (durations give shortest first; the outcomes give the pessimistic order,
    failing tests last among equals, and their negation the optimistic one),
    and among equal scores and tie-breaks the test given first runs first.
    Without ``tie_break`` equal scores keep the order they were given in."""
    values = _scores(scores)
    keys: list[npt.NDArray[np.float64] | npt.NDArray[np.intp]] = [np.arange(values.size)]
    if tie_break is not None:
        keys.append(_scores(tie_break, "tie_break"))
        if keys[-1].shape != values.shape:
            raise ValueError("scores and tie_break must have the same length")
    keys.append(-values)
    # lexsort sorts by the last key first.
    order: Order = np.lexsort(keys).astype(np.intp)
    return order


def order_by_keys(*keys: npt.ArrayLike) -> Order:
    """The indices of the tests in run order, sorted by the first key
    (lowest first), ties by the next, and so on; among equal keys the test
    given first runs first. Negate a key to run its highest values first."""
    if not keys:
        raise ValueError("order_by_keys needs at least one key")
    columns = [_scores(key, "key") for key in keys]
    if any(column.shape != columns[0].shape for column in columns):
        raise ValueError("every key must have the same length")
    # lexsort sorts by the last key first.
    order: Order = np.lexsort([np.arange(columns[0].size), *reversed(columns)]).astype(np.intp)
    return order


def optimal_order(failed: npt.ArrayLike, durations: npt.ArrayLike) -> Order:
    """The best order knowing the outcomes: failing tests first, shortest
    first among them and among the rest, then as given.

    It is an upper bound for APFD and APFDc (failures first, and shortest
    first among them), for NAPFD and recall within a time budget (shortest
    first fits the most failures), for recall at a share of the tests, and a
    lower bound for the first failure's position and time."""
    flags = _flags(failed)
    times = _durations(durations, flags.size)
    order: Order = np.lexsort((np.arange(flags.size), times, ~flags)).astype(np.intp)
    return order


# --- scores -----------------------------------------------------------------------


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """The exact area under the ROC curve: the probability that a random
    failing test scores above a random passing one, a tie counting one half
    (Mann-Whitney U with mid-ranks). None unless both classes are present."""
    flags = _flags(labels, "labels")
    values = _scores(scores)
    if values.shape != flags.shape:
        raise ValueError("labels and scores must have the same length")
    positives = int(flags.sum())
    negatives = flags.size - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    # Mid-ranks: every member of a run of equal scores gets the run's mean rank.
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]
    mid = (starts + ends + 1) / 2.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(mid, ends - starts)
    u = float(ranks[flags].sum()) - positives * (positives + 1) / 2.0
    return u / (positives * negatives)


def log_loss(
    labels: npt.ArrayLike, probabilities: npt.ArrayLike, *, eps: float = 1e-15
) -> float | None:
    """The mean negative log-likelihood of the outcomes, probabilities clipped
    to [eps, 1 - eps]; None for no rows."""
    flags = _flags(labels, "labels")
    values = _scores(probabilities, "probabilities")
    if values.shape != flags.shape:
        raise ValueError("labels and probabilities must have the same length")
    if flags.size == 0:
        return None
    clipped = np.clip(values, eps, 1.0 - eps)
    return float(-np.mean(np.where(flags, np.log(clipped), np.log1p(-clipped))))
