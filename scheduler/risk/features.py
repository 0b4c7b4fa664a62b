"""The model's feature matrix: one row per candidate test, one column per
name in FEATURE_NAMES (the order the model registry stores).

Pure and vectorised. `build_features` reads nothing but its arguments (no
clock, no database, no module state), so the same inputs always give the same
matrix; the callers make sure the inputs are as they were before the build
being scored. The queries fill three plain inputs (`scheduler.risk.columns`):
the candidate tests' statistics, the change, and the file-test links between
them.

What depends only on the tests' names and files (their tokens, own-file keys,
directories) lives in a `PathIndex` (`scheduler.risk.paths`). Building one
costs a Python pass over every test, so a caller keeps one per repository and
passes it to every build (`build_features(..., index=...)`); without one, or
when it lacks some candidates, a fresh one is built for the call.

A value nobody knows is NaN (LightGBM routes missing values on its own): a
rate of a test that never ran, the test file of an id that names none, the
changed lines a provider did not send, the association with an empty change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from scheduler.risk.columns import (
    ChangeColumns,
    FeatureInputError,
    FloatArray,
    HistoryColumns,
    IndexArray,
    LinkColumns,
    epoch_seconds,
)
from scheduler.risk.paths import PathIndex

FEATURE_NAMES: tuple[str, ...] = (
    # The test's own history (test_stats).
    "fail_rate_5",  # failing (F or E) share of its newest 5 builds in `recent`; NaN never run
    "fail_rate_20",  # failing (F or E) share of its newest 20 builds in `recent`; NaN never run
    "fail_rate_all",  # failures / runs over all its builds; NaN never run
    "last_failed",  # 1 if its newest build failed (F or E), 0 if it passed; NaN never run
    "builds_since_failure",  # builds since its last failing one (0: the newest); NaN never failed
    "flip_rate",  # flips between passing and failing / (runs - 1); NaN under 2 runs
    "flaky_rate",  # builds in which it failed, then passed on the same commit / runs; NaN never run
    "log_runs",  # log(1 + runs): how much history it has
    "age_days",  # days from its first sighting to `at` (0 if after `at`); NaN unknown
    "duration_mean",  # its mean duration in seconds; NaN unknown
    "is_new",  # 1 if it never ran (runs == 0), else 0
    # "new first, then recently failed" as one number: 1 if new, 0 if it
    # never failed, else 0.5 / (1.5 + builds since its last failure - 0.5 *
    # its failure rate); higher runs first (scheduler.risk.choice)
    "new_or_recent",
    # The change (the same in every row).
    "changed_files",  # number of changed paths
    "changed_lines",  # changed lines (added plus removed); NaN unknown
    "changed_extensions",  # distinct extensions of the changed paths (none counts as one)
    "changed_top_dirs",  # distinct top-level directories touched (the root counts as one)
    # The test and the change together.
    "same_extension_share",  # share of changed paths with its file's extension; NaN no file/change
    "same_top_dir_share",  # share of changed paths under its file's top directory; NaN likewise
    "own_file_changed",  # 1 if its own file changed (paths._own_keys); NaN if it names no file
    "subject_changed",  # 1 if the file it is named after changed (paths._subject); NaN none
    # The file-test links (scheduler.risk.links): per changed path, the builds the test
    # ran in with it changed ("ran") and those it started failing in ("failed": a status
    # change, not a build it stayed red in), each build weighing half as much every
    # HALF_LIFE_BUILDS (200) builds of the repository later.
    "cofail_max",  # max over changed paths of (failed + 0.1) / (ran + 2); NaN no change
    "cofail_sum",  # sum over changed paths of failed (decayed status changes together)
    "cochange_max",  # max over changed paths of ran (decayed builds together)
    "path_distance",  # fewest directory steps from a changed path to its file; NaN no file/change
    "token_jaccard",  # max over changed paths of the tokens' Jaccard similarity with its id
    # The test and the symbols (functions, classes) the change touched, read
    # from its files' hunks (rules at scheduler.risk.symbols); NaN when the
    # change names none.
    "symbol_named",  # 1 if a part of its id after the file has the stem of a changed symbol
    "symbol_tokens",  # max over changed symbols of the Jaccard similarity of the tokens
    # The repository: its share of tests failing in their first build, read
    # from the tests scored (the same in every row; new_test_rate below). The
    # heuristic places new tests by it; models do not read it.
    "new_test_rate",
)


# The prior of the co-failure strength: a pair never seen together counts as
# 0.05 (a typical failure rate) with the weight of two builds, so one shared
# failure is not yet certainty and a path without a link is not "never fails".
COFAIL_ALPHA = 0.1
COFAIL_BETA = 2.0

# A test new to riskrank fails in its first build about this often, with the
# weight of this many tests: the prior of new_test_rate. On the shared
# histories' first halves, tests failed in their first build 0% (druid, Apache
# Commons), 9-25% (dune-common's variants, more-itertools) and 40% (IOF/ROL) of
# the time, against 50-90% for a test that failed in its last build.
NEW_TEST_PRIOR = 0.12
NEW_TEST_PRIOR_TESTS = 10.0

# The letters of test_stats.recent (scheduler.risk.tally), newest first.
_PASS, _FAIL, _ERROR = (ord(letter) for letter in "PFE")
_WINDOWS = (5, 20)

_SECONDS_PER_DAY = 86_400.0

# Failed-together counts equal to this many decimals are a tie (strongest_cofailure).
_TIE_DECIMALS = 9


@dataclass(frozen=True, eq=False)
class FeatureMatrix:
    """values[i, j] is feature FEATURE_NAMES[j] of test tests[i]."""

    tests: tuple[str, ...]
    values: npt.NDArray[np.float32]
    names: tuple[str, ...] = FEATURE_NAMES

    def column(self, name: str) -> npt.NDArray[np.float32]:
        return self.values[:, self.names.index(name)]


# --- the features -------------------------------------------------------------


def _ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    """numerator / denominator, NaN where the denominator is not positive."""
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _history_features(history: HistoryColumns, at: float) -> dict[str, FloatArray]:
    n = len(history)
    width = max(_WINDOWS)
    # A fixed-width bytes array cuts each string to its newest `width`
    # letters and pads with NUL; its bytes are the letters.
    letters = np.asarray(history.recent, dtype=f"S{width}").view(np.uint8).reshape(n, width)
    failing = (letters == _FAIL) | (letters == _ERROR)
    seen = failing | (letters == _PASS)
    # Counts over the newest k letters as a product with ones: several times
    # faster than a sum along the rows.
    within = {
        size: (
            (failing[:, :size].view(np.uint8) @ np.ones(size, dtype=np.uint8)).astype(np.float64),
            (seen[:, :size].view(np.uint8) @ np.ones(size, dtype=np.uint8)).astype(np.float64),
        )
        for size in _WINDOWS
    }
    runs = history.runs
    rate = _ratio(history.failures, runs)
    features = {
        f"fail_rate_{size}": _ratio(failed, seen) for size, (failed, seen) in within.items()
    }
    features.update(
        fail_rate_all=rate,
        last_failed=np.where(seen[:, 0], failing[:, 0], np.nan),
        builds_since_failure=history.builds_since_failure,
        flip_rate=_ratio(history.flips, runs - 1.0),
        flaky_rate=_ratio(history.flaky_runs, runs),
        log_runs=np.log1p(runs),
        age_days=np.maximum((at - history.first_seen) / _SECONDS_PER_DAY, 0.0),
        duration_mean=history.duration_mean,
        is_new=(runs == 0).astype(np.float64),
        new_or_recent=_new_or_recent(runs, history.builds_since_failure, rate),
    )
    return features


def _new_or_recent(runs: FloatArray, since: FloatArray, rate: FloatArray) -> FloatArray:
    """The order "new first, then by builds since the last failure (fewest
    first, never failed last), then by failure rate" as one number, higher
    first: a failure rate moves a test by less than half a build, so it
    only breaks ties between equal builds since the last failure."""
    recent = 0.5 / (1.5 + since - 0.5 * np.nan_to_num(rate, nan=0.0))
    failed_before = np.where(np.isnan(since), 0.0, recent)
    return np.where(runs == 0, 1.0, failed_before)


def new_test_rate(history: HistoryColumns) -> float:
    """The share of tests failing in their first build, of `history`'s tests
    whose first build is still in their recent outcomes (test_stats.recent
    keeps the newest 64: its oldest letter is the first build's while runs
    are no more than its letters), shrunk toward NEW_TEST_PRIOR with the
    weight of NEW_TEST_PRIOR_TESTS tests. A repository whose new tests come
    in failing (a suite growing with its features) puts them first; one
    whose new tests pass puts them with the tests that never failed.

    The tests riskrank first saw with the earliest first_seen (the suite of
    the first report it ever got) are not new tests: they were there before
    riskrank was. Counted, the hundreds of them that passed in the first
    build drowned the few new tests a change adds (on the mutation history,
    more-itertools, a rate of 0.007 where 24% of the tests added after its
    first build failed in their first)."""
    seen = history.first_seen
    known = ~np.isnan(seen)
    oldest = seen[known].min() if known.any() else math.nan
    firsts = [
        letters[-1]
        for letters, runs, first in zip(
            history.recent, history.runs.tolist(), seen.tolist(), strict=True
        )
        if letters and runs == len(letters) and first != oldest
    ]
    failed = sum(letter in "FE" for letter in firsts)
    return (failed + NEW_TEST_PRIOR * NEW_TEST_PRIOR_TESTS) / (len(firsts) + NEW_TEST_PRIOR_TESTS)


def _link_features(links: LinkColumns, n: int, changed: int) -> dict[str, FloatArray]:
    if changed == 0:
        return {
            "cofail_max": np.full(n, np.nan),
            "cofail_sum": np.zeros(n),
            "cochange_max": np.full(n, np.nan),
        }
    tests = links.test_index
    strength = (links.failed_together + COFAIL_ALPHA) / (links.changed_together + COFAIL_BETA)
    # A changed path without a link to the test is a pair never seen
    # together: (0 + alpha) / (0 + beta), and 0 builds together.
    unlinked = np.bincount(tests, minlength=n) < changed
    cofail_max = np.where(unlinked, COFAIL_ALPHA / COFAIL_BETA, -np.inf)
    np.maximum.at(cofail_max, tests, strength)
    cochange_max = np.zeros(n)
    np.maximum.at(cochange_max, tests, links.changed_together)
    return {
        "cofail_max": cofail_max,
        "cofail_sum": np.bincount(tests, weights=links.failed_together, minlength=n),
        "cochange_max": cochange_max,
    }


def _check_links(links: LinkColumns, n: int, changed: int) -> None:
    if len(links) == 0:
        return
    for name, array, bound in (
        ("test_index", links.test_index, n),
        ("path_index", links.path_index, changed),
    ):
        if array.min() < 0 or array.max() >= bound:
            raise FeatureInputError(f"link {name} out of range [0, {bound})")


def build_features(
    history: HistoryColumns,
    change: ChangeColumns,
    links: LinkColumns,
    *,
    at: datetime,
    index: PathIndex | None = None,
    new_rate: float | None = None,
) -> FeatureMatrix:
    """The feature matrix of `history`'s tests for `change`, as of `at` (a
    naive `at` is UTC). `index` is the caller's cached PathIndex; tests it
    lacks are indexed for this call only (keep `index.covering(...)` to
    avoid that). `new_rate` is new_test_rate when the caller has it from
    other tests (a matrix of one unseen test has none of its own)."""
    n = len(history)
    paths = change.paths
    _check_links(links, n, len(paths))
    if index is None:
        index = PathIndex(history.names, history.files)
    rows = index.rows(history.names)
    if rows is None:
        index = index.covering(history.names, history.files)
        rows = index.rows(history.names)
        assert rows is not None  # covering knows every name it was given
    columns = _history_features(history, epoch_seconds(at))
    rate = new_test_rate(history) if new_rate is None else new_rate
    columns["new_test_rate"] = np.full(n, rate, dtype=np.float64)
    changed_lines = math.nan if change.changed_lines is None else change.changed_lines
    columns.update(
        changed_files=np.full(n, len(paths), dtype=np.float64),
        changed_lines=np.full(n, changed_lines, dtype=np.float64),
    )
    columns.update(index.features(rows, paths))
    columns.update(_link_features(links, n, len(paths)))
    columns.update(index.symbol_features(rows, change.symbols))

    values = np.empty((n, len(FEATURE_NAMES)), dtype=np.float32)
    for number, name in enumerate(FEATURE_NAMES):
        values[:, number] = columns.pop(name)
    assert not columns, f"features without a place in FEATURE_NAMES: {sorted(columns)}"
    return FeatureMatrix(history.names, values)


# --- explanations -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class StrongestCoFailure:
    """Per test row, the changed path that failed together with it most
    often, which a reason names: its position in ChangeColumns.paths (-1 when
    no changed path has a link to the test) and its failed-together count,
    the (decayed) builds in which the test started failing with that path
    changed (0 likewise)."""

    path_index: IndexArray
    failed_together: FloatArray

    def __len__(self) -> int:
        return int(self.path_index.shape[0])


def strongest_cofailure(links: LinkColumns, n: int) -> StrongestCoFailure:
    """For each of `n` test rows, its link with the highest failed-together
    count (to _TIE_DECIMALS); ties go to the higher co-failure strength (cofail_max's
    (failed + alpha) / (ran + beta), so the path that changed with it in fewer
    builds), then to the earlier changed path. One sort of the links, no loop
    over the tests."""
    _check_links(links, n, int(links.path_index.max(initial=-1)) + 1)
    path_index = np.full(n, -1, dtype=np.intp)
    failed_together = np.zeros(n, dtype=np.float64)
    if len(links) == 0:
        return StrongestCoFailure(path_index, failed_together)
    strength = (links.failed_together + COFAIL_ALPHA) / (links.changed_together + COFAIL_BETA)
    # By test, then most failures, then strongest, then path: the first link
    # of each test is its strongest. Decayed counts that differ only by
    # rounding (the same builds, decayed in other steps) are a tie.
    failures = np.round(links.failed_together, _TIE_DECIMALS)
    order = np.lexsort((links.path_index, -strength, -failures, links.test_index))
    tests = links.test_index[order]
    first = order[np.r_[True, tests[1:] != tests[:-1]]]
    path_index[links.test_index[first]] = links.path_index[first]
    failed_together[links.test_index[first]] = links.failed_together[first]
    return StrongestCoFailure(path_index, failed_together)
