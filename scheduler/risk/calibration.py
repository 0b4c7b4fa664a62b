"""Calibration: a score made a probability that holds (pure: arrays in, a
map out).

A plan's scores are read as probabilities: the miss risk is their sum over
the dropped tests, and `confidence` mode keeps tests until their share of
the expected failures reaches its target. A model's raw probabilities
drift from the observed rates as the project changes, and neither the
heuristic (0.01 plus weights) nor a simple ordering served as a model is a
probability at all. So every scorer gets a monotone map from its score to
the failure rate observed at that score on builds it was not trained on
(the newest builds of the repository's own history):

- **isotonic**: the pool-adjacent-violators fit of the failure rate as a
  non-decreasing step function of the score (on at most `MAX_BINS`
  quantile bins of the score, ties kept in one bin), then interpolated
  linearly between the blocks' mean scores, so that distinct scores stay
  distinct in the middle of the range;
- **Platt**: sigmoid(a * logit(score) + c), a > 0, by maximum likelihood
  on Platt's smoothed targets (a failure counts (N+ + 1) / (N+ + 2), a
  pass 1 / (N- + 2)), by damped Newton steps.

Both are fit on the older half of the held-out builds and scored by log loss
on the newer half; the lower wins and is fit again on every held-out build.
The expected calibration error (`ece`) stored with the map is the chosen
method's, fit on the older half, measured on the newer half: builds the map
did not see. The map keeps the score's order (a tiny term, `TIE_BREAK`
times the score, keeps distinct scores distinct where the map is flat), so
calibrating never changes which test runs first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]

ISOTONIC: Final = "isotonic"
PLATT: Final = "platt"
METHODS: Final = (ISOTONIC, PLATT)
MAX_BINS: Final = 1000
# Pseudo-rows at the overall rate added to each bin before pooling: a bin
# with no failure gets a small probability, never 0 (a log loss of infinity
# on the first failure there).
PRIOR_ROWS: Final = 2.0
# Keeps distinct scores in order where the map is flat (far below any
# figure a plan shows: probabilities are rounded to 6 digits).
TIE_BREAK: Final = 1e-9
DECILES: Final = 10
EPS: Final = 1e-6
MIN_BUILDS: Final = 4  # held-out builds needed: two to fit on, two to check on


@dataclass(frozen=True)
class Reliability:
    """Per bin of the predicted probability (equal counts of rows, lowest
    first): rows, the mean predicted probability and the observed rate."""

    rows: tuple[int, ...]
    predicted: tuple[float, ...]
    observed: tuple[float, ...]

    @property
    def ece(self) -> float | None:
        """The expected calibration error: the row-weighted mean of
        |predicted - observed| over the bins (None without rows)."""
        total = sum(self.rows)
        if total == 0:
            return None
        return math.fsum(
            n * abs(p - o) for n, p, o in zip(self.rows, self.predicted, self.observed, strict=True)
        ) / float(total)

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": list(self.rows),
            "predicted": [round(value, 6) for value in self.predicted],
            "observed": [round(value, 6) for value in self.observed],
            "ece": None if self.ece is None else round(self.ece, 6),
        }


def reliability(
    probabilities: npt.ArrayLike, failed: npt.ArrayLike, bins: int = DECILES
) -> Reliability:
    """The reliability table of `probabilities` against the outcomes: rows
    sorted by probability and cut into `bins` bins of (nearly) equal counts."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(failed, dtype=np.float64)
    if p.size == 0:
        return Reliability((), (), ())
    order = np.argsort(p, kind="stable")
    parts = [part for part in np.array_split(order, min(bins, p.size)) if part.size]
    return Reliability(
        tuple(int(part.size) for part in parts),
        tuple(float(p[part].mean()) for part in parts),
        tuple(float(y[part].mean()) for part in parts),
    )


def _logit(p: Floats) -> Floats:
    clipped = np.clip(p, EPS, 1.0 - EPS)
    result: Floats = np.log(clipped) - np.log1p(-clipped)
    return result


def _sigmoid(z: Floats) -> Floats:
    result: Floats = np.exp(-np.logaddexp(0.0, -z))
    return result


def log_loss(probabilities: Floats, failed: Floats) -> float:
    p = np.clip(probabilities, EPS, 1.0 - EPS)
    return float(-np.mean(failed * np.log(p) + (1.0 - failed) * np.log1p(-p)))


@dataclass(frozen=True)
class Calibration:
    """A monotone map from a scorer's score to a failure probability, with
    how it was chosen and how well it held on builds it was not fit on."""

    method: str
    # isotonic: the knots (scores ascending, probabilities non-decreasing)
    knots: tuple[float, ...] = ()
    values: tuple[float, ...] = ()
    # Platt: sigmoid(scale * logit(score) + shift)
    scale: float = 1.0
    shift: float = 0.0
    ece: float | None = None  # on the newer half of the held-out builds
    log_loss: Mapping[str, float] | None = None  # each method, on the same
    reliability: Reliability | None = None  # the chosen method's, there
    rows: int = 0
    failures: int = 0
    builds: int = 0

    def apply(self, scores: npt.ArrayLike) -> Floats:
        """The probability of each score (order kept, see TIE_BREAK)."""
        raw = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
        if self.method == PLATT:
            mapped = _sigmoid(self.scale * _logit(raw) + self.shift)
        else:
            mapped = np.interp(raw, self.knots, self.values)
        result: Floats = np.clip(mapped + TIE_BREAK * np.clip(raw, 0.0, 1.0), 0.0, 1.0)
        return result

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "knots": [float(value) for value in self.knots],
            "values": [float(value) for value in self.values],
            "scale": self.scale,
            "shift": self.shift,
            "ece": None if self.ece is None else round(self.ece, 6),
            "log_loss": None
            if self.log_loss is None
            else {name: round(value, 6) for name, value in self.log_loss.items()},
            "reliability": None if self.reliability is None else self.reliability.as_json(),
            "rows": self.rows,
            "failures": self.failures,
            "builds": self.builds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Calibration | None:
        """The map of `as_json`; None for none, or one this riskrank cannot
        read (an unknown method, knots that do not pair up)."""
        if not isinstance(data, Mapping) or data.get("method") not in METHODS:
            return None
        knots = tuple(float(value) for value in data.get("knots") or ())
        values = tuple(float(value) for value in data.get("values") or ())
        if data["method"] == ISOTONIC and (not knots or len(knots) != len(values)):
            return None
        table = data.get("reliability")
        return cls(
            method=str(data["method"]),
            knots=knots,
            values=values,
            scale=float(data.get("scale", 1.0)),
            shift=float(data.get("shift", 0.0)),
            ece=data.get("ece"),
            log_loss=data.get("log_loss"),
            reliability=Reliability(
                tuple(table["rows"]), tuple(table["predicted"]), tuple(table["observed"])
            )
            if isinstance(table, Mapping)
            else None,
            rows=int(data.get("rows", 0)),
            failures=int(data.get("failures", 0)),
            builds=int(data.get("builds", 0)),
        )


# --- fitting ---------------------------------------------------------------------


def _bins(raw: Floats, failed: Floats) -> tuple[Floats, Floats, Floats]:
    """Score bins of the rows: (mean score, rows, failures) per bin,
    ascending; equal scores always in one bin, at most MAX_BINS bins of
    about equal counts."""
    distinct, inverse, counts = np.unique(raw, return_inverse=True, return_counts=True)
    if distinct.size > MAX_BINS:
        # Cut the cumulative count of the distinct scores into equal parts.
        cumulative = np.cumsum(counts)
        group = np.minimum((cumulative - counts) * MAX_BINS // cumulative[-1], MAX_BINS - 1).astype(
            np.int64
        )
        _, group = np.unique(group, return_inverse=True)
        inverse = group[inverse]
    rows = np.bincount(inverse).astype(np.float64)
    sums = np.bincount(inverse, weights=raw)
    failures = np.bincount(inverse, weights=failed).astype(np.float64)
    centers: Floats = sums / rows
    return centers, rows, failures


def _pool(rates: Floats, weights: Floats) -> tuple[list[int], list[float]]:
    """Pool adjacent violators: the non-decreasing fit of `rates` (weighted),
    as blocks (index of each block's first bin, its value)."""
    starts: list[int] = []
    values: list[float] = []
    sizes: list[float] = []
    for index, (rate, weight) in enumerate(zip(rates.tolist(), weights.tolist(), strict=True)):
        starts.append(index)
        values.append(rate)
        sizes.append(weight)
        while len(values) > 1 and values[-2] >= values[-1]:
            size = sizes[-2] + sizes[-1]
            values[-2] = (values[-2] * sizes[-2] + values[-1] * sizes[-1]) / size
            sizes[-2] = size
            del starts[-1], values[-1], sizes[-1]
    return starts, values


def fit_isotonic(raw: Floats, failed: Floats) -> Calibration:
    """The isotonic map (see the module's docstring)."""
    centers, rows, failures = _bins(raw, failed)
    rate = float(failed.mean())
    smoothed = (failures + PRIOR_ROWS * rate) / (rows + PRIOR_ROWS)
    starts, values = _pool(smoothed, rows)
    ends = [*starts[1:], centers.size]
    knots = [
        float(np.average(centers[a:b], weights=rows[a:b]))
        for a, b in zip(starts, ends, strict=True)
    ]
    return Calibration(ISOTONIC, tuple(knots), tuple(values))


def fit_platt(raw: Floats, failed: Floats) -> Calibration | None:
    """The Platt map, by damped Newton steps on the log loss of the score bins
    (`_bins`: a weighted fit of their rows and failures, as fast for a
    million rows as for a thousand); None when it would reverse the order
    (a <= 0) or the scores do not vary."""
    if raw.size == 0 or np.ptp(raw) == 0 or failed.min() == failed.max():
        return None
    centers, rows, observed = _bins(raw, failed)
    # Platt's own targets: a failure counts (N+ + 1) / (N+ + 2), a pass
    # 1 / (N- + 2). Without them, scores that nearly separate the few
    # failures from the rest drive the slope to infinity (seen in
    # dune-total's closed loop: 1e12, and every test given 1e-11).
    positives = float(observed.sum())
    negatives = float(rows.sum()) - positives
    targets = observed * (positives + 1.0) / (positives + 2.0) + (rows - observed) / (
        negatives + 2.0
    )
    z = _logit(centers)
    rate = float(np.clip(targets.sum() / rows.sum(), EPS, 1 - EPS))
    a, c = 1.0, math.log(rate / (1 - rate)) - float(np.average(z, weights=rows))

    def loss(a: float, c: float) -> float:
        # The binned log loss, by logaddexp: finite for any a and c.
        t = a * z + c
        return float(
            np.dot(targets, np.logaddexp(0.0, -t)) + np.dot(rows - targets, np.logaddexp(0.0, t))
        )

    current = loss(a, c)
    for _ in range(100):
        p = _sigmoid(a * z + c)
        residual = rows * p - targets
        w = np.maximum(rows * p * (1.0 - p), 1e-12)
        gradient = np.array([np.dot(residual, z), np.sum(residual)])
        hessian = np.array([[np.dot(w, z * z), np.dot(w, z)], [np.dot(w, z), w.sum()]])
        step = np.linalg.solve(hessian + 1e-9 * np.eye(2), gradient)
        # Damped: a full Newton step from far away can overshoot to a slope
        # of 1e12; halve it until the loss does not grow.
        size = 1.0
        while size > 1e-6:
            tried = loss(a - size * float(step[0]), c - size * float(step[1]))
            if math.isfinite(tried) and tried <= current + 1e-12 * abs(current):
                break
            size /= 2.0
        a, c = a - size * float(step[0]), c - size * float(step[1])
        current = loss(a, c)
        if not (math.isfinite(a) and math.isfinite(c)):
            return None
        if np.abs(size * step).max() < 1e-10:
            break
    if a <= 0:
        return None
    return Calibration(PLATT, scale=a, shift=c)


def _fit(method: str, raw: Floats, failed: Floats) -> Calibration | None:
    return fit_isotonic(raw, failed) if method == ISOTONIC else fit_platt(raw, failed)


def fit(scores: npt.ArrayLike, failed: npt.ArrayLike, builds: npt.ArrayLike) -> Calibration | None:
    """The calibration of a scorer from its scores on held-out builds (rows
    of score, failed, build index; a larger index is a later build): see
    the module's docstring. None when it cannot be learnt: fewer than
    MIN_BUILDS builds, or no failure (or nothing but failures) among them."""
    raw = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    y = np.asarray(failed, dtype=np.float64)
    build_of = np.asarray(builds, dtype=np.int64)
    distinct = np.unique(build_of)
    if distinct.size < MIN_BUILDS or y.size == 0 or y.min() == y.max():
        return None
    middle = distinct[distinct.size // 2]
    older, newer = build_of < middle, build_of >= middle
    losses: dict[str, float] = {}
    checked: dict[str, Floats] = {}
    if y[older].min() != y[older].max():
        for method in METHODS:
            fitted = _fit(method, raw[older], y[older])
            if fitted is not None:
                checked[method] = fitted.apply(raw[newer])
                losses[method] = log_loss(checked[method], y[newer])
    chosen = min(losses, key=lambda method: losses[method]) if losses else ISOTONIC
    final = _fit(chosen, raw, y) or fit_isotonic(raw, y)
    table = reliability(checked[final.method], y[newer]) if final.method in checked else None
    return Calibration(
        final.method,
        final.knots,
        final.values,
        final.scale,
        final.shift,
        ece=None if table is None else table.ece,
        log_loss=losses or None,
        reliability=table,
        rows=int(y.size),
        failures=int(y.sum()),
        builds=int(distinct.size),
    )


# --- measured as plans are evaluated ---------------------------------------------

# The bins of a served probability that plan evaluation tallies the outcomes
# in (scheduler.planning.monitor adds them up over a window of plans to watch
# calibration drift). Fixed, so that the tallies of many plans add up without
# reading their rows again (equal-count bins would need every row of the
# window); finer at the bottom, where most of a CI suite's probabilities are.
TALLY_EDGES: Final = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def tally_bins(
    probabilities: npt.ArrayLike, failed: npt.ArrayLike, weights: npt.ArrayLike | None = None
) -> list[list[float]]:
    """Per bin of TALLY_EDGES: [rows, sum of the probabilities, failures],
    each row counted `weights` times (1 without)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    y = np.asarray(failed, dtype=np.float64)
    w = np.ones(p.size) if weights is None else np.asarray(weights, dtype=np.float64)
    # Bin i holds [edge i, edge i + 1); a probability of 1 the last bin.
    index = np.clip(np.searchsorted(TALLY_EDGES, p, side="right") - 1, 0, len(TALLY_EDGES) - 2)
    size = len(TALLY_EDGES) - 1
    rows = np.bincount(index, weights=w, minlength=size)
    predicted = np.bincount(index, weights=w * p, minlength=size)
    failures = np.bincount(index, weights=w * y, minlength=size)
    return [
        [round(float(n), 6), round(float(s), 6), round(float(f), 6)]
        for n, s, f in zip(rows, predicted, failures, strict=True)
    ]


def _tally_tables(tallies: Sequence[Sequence[Sequence[float]]]) -> Floats:
    """The `tally_bins` tallies as one array (tallies, bins, 3); a tally of
    another shape (made with other edges) is left out."""
    size = len(TALLY_EDGES) - 1
    tables = [np.asarray(bins, dtype=np.float64) for bins in tallies]
    kept = [table for table in tables if table.shape == (size, 3)]
    return np.stack(kept) if kept else np.zeros((0, size, 3))


def _errors_and_rows(totals: Floats) -> tuple[Floats, Floats]:
    """Per added-up tally (the last two axes: bins, 3), the sum over the
    bins of |sum of probabilities - failures|, and the rows: their ratio is
    the row-weighted mean of |mean probability - observed rate|."""
    return np.abs(totals[..., 1] - totals[..., 2]).sum(axis=-1), totals[..., 0].sum(axis=-1)


def binned_ece(tallies: Sequence[Sequence[Sequence[float]]]) -> tuple[float | None, float]:
    """The expected calibration error of `tally_bins` tallies added up, and
    the (weighted) rows they hold: the row-weighted mean over the bins of
    |mean probability - observed rate| (None without rows)."""
    error, rows = _errors_and_rows(_tally_tables(tallies).sum(axis=0))
    if rows <= 0:
        return None, 0.0
    return float(error / rows), float(rows)


def binned_ece_low(
    tallies: Sequence[Sequence[Sequence[float]]],
    level: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> float | None:
    """The lower bound of a `level` bootstrap interval of `binned_ece` over
    these tallies, resampling whole tallies (plans): a build's tests fail
    together, so a build is the unit of evidence, and one build where many
    tests broke at once moves the error of a window by itself. Percentile
    bound, seeded: the same window gets the same bound. None without rows."""
    tables = _tally_tables(tallies)
    count = len(tables)
    if count == 0 or tables[:, :, 0].sum() <= 0:
        return None
    picks = np.random.default_rng(seed).integers(0, count, size=(resamples, count))
    offsets = (picks + np.arange(resamples)[:, None] * count).ravel()
    weights = np.bincount(offsets, minlength=resamples * count).reshape(resamples, count)
    totals = np.tensordot(weights, tables, axes=1)  # (resamples, bins, 3)
    errors, rows = _errors_and_rows(totals)
    ece = np.divide(errors, rows, out=np.full(resamples, np.nan), where=rows > 0)
    if np.all(np.isnan(ece)):  # every resample drew only plans without rows
        return None
    return float(np.nanquantile(ece, (1.0 - level) / 2.0))


def expected_failures(probabilities: Sequence[float] | Floats) -> float:
    """The expected number of failures among tests of these probabilities."""
    return float(np.sum(np.asarray(probabilities, dtype=np.float64)))


def any_failure(probabilities: Sequence[float] | Floats) -> float:
    """The probability that at least one of these tests fails, each on its
    own: 1 - prod(1 - p), by logs so that ten thousand tests do not lose it."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    if p.size == 0:
        return 0.0
    if (p >= 1.0).any():
        return 1.0
    return float(-np.expm1(np.sum(np.log1p(-p))))


# The level of the bound a plan states on the failures it drops.
BOUND_LEVEL: Final = 0.95
# Tests at or under this probability enter the law through its power series
# (`_law`); those above, few in what a plan drops, one by one.
SERIES_MAX: Final = 0.5


def _law(p: Floats, terms: int) -> Floats:
    """P(failures = k) for k < `terms`, tests of probabilities `p` failing
    each on its own (the Poisson-binomial law), truncated.

    The generating function is prod(1 - p + p z). For p <= SERIES_MAX its
    logarithm is sum log(1 - p) + sum_j (-1)^(j-1) r^j z^j / j with
    r = p / (1 - p) <= 1, summed over the tests at once; the exponential of
    that series, to `terms` terms, is the classic recurrence
    f_k = (1/k) sum_j j g_j f_(k-j). Ten thousand tests cost a few
    vector sums, where a product test by test costs a loop over them. The
    few tests above SERIES_MAX are multiplied in one by one."""
    small = p[p <= SERIES_MAX]
    r = small / (1.0 - small)
    g = np.zeros(terms)
    power = np.ones_like(r)
    for j in range(1, terms):
        power = power * r
        g[j] = (-1.0) ** (j - 1) * float(power.sum()) / j
    law = np.zeros(terms)
    law[0] = math.exp(float(np.log1p(-small).sum()))
    for k in range(1, terms):
        law[k] = float(np.dot(np.arange(1, k + 1) * g[1 : k + 1], law[k - 1 :: -1][:k])) / k
    for q in p[p > SERIES_MAX].tolist():
        law[1:] = law[1:] * (1.0 - q) + law[:-1] * q
        law[0] *= 1.0 - q
    return np.clip(law, 0.0, 1.0)


def failures_bound(probabilities: Sequence[float] | Floats, level: float = BOUND_LEVEL) -> int:
    """The `level` bound on the number of failures among tests of these
    probabilities, each failing on its own: the smallest k with
    P(failures <= k) >= level, under the exact (Poisson-binomial) law.

    The expected number alone says little of the spread: 0.5 expected
    failures may be one test at 0.5 (bound 1) or a thousand at 0.0005
    (bound 2). The law is truncated at a few terms past the mean
    (`_law`), widened until the bound falls inside."""
    p = np.clip(np.nan_to_num(np.asarray(probabilities, dtype=np.float64), nan=0.0), 0.0, 1.0)
    p = p[p > 0.0]
    if p.size == 0:
        return 0
    mean = float(p.sum())
    spread = math.sqrt(float((p * (1.0 - p)).sum()))
    terms = int(min(p.size, math.ceil(mean + 4.0 * spread + 4.0))) + 1
    while True:
        cdf = np.cumsum(_law(p, terms))
        inside = np.flatnonzero(cdf >= level - 1e-9)
        if inside.size:
            return int(inside[0])
        if terms > p.size:
            return int(p.size)
        terms = min(p.size + 1, 2 * terms)
