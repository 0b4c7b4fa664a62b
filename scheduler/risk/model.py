"""The LightGBM model of a test's failure (pure: arrays in, arrays and text out).

`train_model` takes one row per (build, test): the feature vector, whether the
test failed (the label) and the build's index, where a larger index is a later
build. It never touches the database or the clock, so the same rows give the
same model, byte for byte.

How it trains, and why:

- **Split in time, never shuffled.** The newest builds, ``validation_share``
  of them (at least one, and at least one is left to train on), are held out;
  the model is trained on the older ones and stopped early on the newest, as
  it will be used: on builds after the ones it learnt from. Refused
  (`TooFewBuilds`) under ``min_builds`` builds, and (`NoPositiveLabels`) when
  no training row failed: there would be nothing to learn.
- **A comparison slice no fit has seen.** With ``comparison_share``, the
  newest builds are held out before that split: neither the training nor
  early stopping sees them (early stopping picks the rounds that do best on
  its slice, so its APFD there flatters the model). The model trained on the
  older builds (`TrainedModel.evaluated`) is what the registry compares with
  the active model on them; the refit below still learns from them.
- **Early stopping** on the validation builds' log loss (up to ``MAX_ROUNDS``
  rounds, patience ``EARLY_STOPPING_ROUNDS``). Then, by default, the model is
  **refit on every row** with the best number of rounds: the newest builds are
  the ones most like the next commit, so the served model should have seen
  them. The validation metrics describe the held-out model (the refit one has
  no held-out builds left); ``refit=False`` serves the held-out model itself.
- **Early stopping on the order, not the loss.** The rounds are chosen by
  the mean APFD of the validation builds (each build's tests ranked by the
  model), the measure the model is judged by; log loss is still reported.
  On dune-total's warm-up part, with trees of depth 6, stopping on log loss
  ended at 29 rounds and on APFD at 78: held-out APFD 0.950 against 0.952,
  recall at 33% of the tests 0.936 against 0.945 (builds 1,071-1,530 of
  2,186, trained on the builds before them; benchmarks/model_vs_heuristic.py's
  data).
- **What a test takes is not a reason it fails.** ``EXCLUDED_FEATURES``
  (the mean duration) stay in the feature vector, for the policy and for
  the record, but the model does not read them: a test's mean duration is
  nearly unique to it, so the trees learnt *which* tests had failed (their
  fingerprints) rather than *why*, and that does not carry to later builds.
  With it, the model (trees of depth 6) lost to "recently failed first" on
  dune-total's warm-up (APFD 0.935 against 0.940, 12 rounds); without it, it
  won (0.950).
- **An additive model: trees of one split.** Each tree splits one feature
  once, so the model is a sum of one learnt curve per feature (a generalised
  additive model), without interactions. A CI history drifts: the tests, the
  failure rate and how long failures persist change from one period to the
  next (dune-total's builds fail 9% of the time in one stretch and every
  time in its last third), and interactions learnt on one period did not
  carry to the next. Chosen on dune-total's warm-up part only: trained on the
  builds before 600, 900 and 1,224 and compared on the 300 builds after each,
  trees of one split had APFD 0.950, 0.932 and 0.951 where trees of depth 6
  (31 leaves) had 0.952, 0.921 and 0.952, the riskrank heuristic 0.937,
  0.928 and 0.947 and "recently failed first" 0.914, 0.925 and 0.940;
  retrained every 50 builds over builds 600-1,530 they had 0.945 against
  0.934 for depth 6 and 0.942 for the heuristic, and 0.784 against 0.745 on
  status changes. Explaining a row (TreeSHAP) is cheap as well: with one
  split a tree, a contribution is the tree's leaf value minus its mean.
- **Class imbalance** (about 1% of rows fail) is left to the loss by default:
  binary log loss is a proper scoring rule, so the model's outputs are
  failure probabilities, which the policy needs as they are (it orders by
  probability per second and trims to a share of the expected failures).
  Weighting the failures by the label ratio (``scale_pos_weight``,
  ``is_unbalance``) ranked worse and calibrated worse on
  `benchmarks/training.py`'s data at 300,000 rows (0.64% failing): validation
  AUC 0.811 against 0.819 unweighted, mean APFD 0.796 against 0.803, log loss
  0.0312 against 0.0301, and a mean probability of 0.0044 for a failure rate
  of 0.0064 even after the correction below (0.0063 unweighted); the square
  root of the ratio ranked about the same (0.820, 0.805) and still calibrated
  worse (0.0057). ``pos_weight`` still weights the failures when asked (a
  number, or ``"balanced"`` for negatives / positives of the rows being fit);
  the prior shift it causes (the odds multiplied by the weight) is taken back
  by adding ``-log(weight)`` to every leaf of the first tree, so the saved
  model still predicts probabilities on the unweighted scale (exactly so only
  at the weighted optimum).
- **Deterministic**: ``deterministic=True``, ``seed``, ``num_threads`` fixed
  (2 by default), ``force_col_wise=True``, so the same rows give the same
  model text; ``verbosity=-1``.

The model is kept as LightGBM's own text (``model_to_string()``), which
`load_model` reads back into a `LoadedModel` that predicts exactly what the
trained booster predicted.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

# LightGBM's OpenMP threads spin while they wait for work by default. On a
# machine whose cores are busy (a worker beside the API, two tasks at once,
# a CI runner) they spin against each other: training 1,000,000 rows took
# 262 s instead of 29 s with passive waiting at the same load (passive was
# about 1.5 times slower on a lightly loaded machine). OpenMP reads it once,
# when it loads with LightGBM, so it is set before the import; an operator's
# own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from scheduler.evaluation import metrics
from scheduler.risk.features import FeatureMatrix

Floats: TypeAlias = npt.NDArray[np.float64]
Matrix: TypeAlias = npt.NDArray[np.float32] | npt.NDArray[np.float64]
Labels: TypeAlias = npt.NDArray[np.bool_]
Builds: TypeAlias = npt.NDArray[np.int64]

MAX_ROUNDS: Final = 1000
EARLY_STOPPING_ROUNDS: Final = 50
# Features the model does not read (see the module's docstring).
EXCLUDED_FEATURES: Final = frozenset({"duration_mean"})
MIN_BUILDS: Final = 10
THREADS: Final = 2
# Shares of a build's tests at which validation reports the recall of failures.
RECALL_SHARES: Final = (0.2, 0.33)

# What a caller may change (any LightGBM parameter, by its canonical name),
# chosen for CI histories: many rows, rare failures, a few strong features,
# and a project that changes under the model (see "An additive model" in the
# module's docstring for the depth).
DEFAULT_PARAMS: Final[Mapping[str, Any]] = {
    "learning_rate": 0.05,
    "num_leaves": 2,
    "max_depth": 1,
    "min_data_in_leaf": 100,
    "lambda_l2": 1.0,
    "max_bin": 255,
    "num_threads": THREADS,
}
# What makes the model what this module promises: a probability, the same
# model from the same rows, and silence.
FIXED_PARAMS: Final[Mapping[str, Any]] = {
    "objective": "binary",
    "metric": "binary_logloss",
    "deterministic": True,
    "force_col_wise": True,
    "verbosity": -1,
}
# Parameters that this module sets through its own arguments.
_OWN_ARGUMENTS: Final = {
    "seed": "seed",
    "scale_pos_weight": "pos_weight",
    "is_unbalance": "pos_weight",
    "num_iterations": "MAX_ROUNDS",
    "early_stopping_round": "EARLY_STOPPING_ROUNDS",
}
# LightGBM refuses these in feature names, and turns whitespace into "_".
_BAD_NAME = re.compile(r'[\s"\',:\[\]{}]')


class ModelError(Exception):
    """A model that cannot be trained or loaded as asked."""


class ModelInputError(ModelError, ValueError):
    """Arrays or parameters of the wrong shape or kind."""


class TooFewBuilds(ModelError):
    """Too few builds to train on and to validate on."""


class NoPositiveLabels(ModelError):
    """No failing row to learn from."""


class InvalidModelText(ModelError):
    """Text that is not a binary LightGBM model."""


# --- the result --------------------------------------------------------------------


@dataclass(frozen=True)
class BuildSpan:
    """One side of the time split: its builds (first and last index), rows
    and failing rows."""

    first_build: int
    last_build: int
    builds: int
    rows: int
    failures: int


@dataclass(frozen=True)
class ValidationMetrics:
    """The held-out model on the validation builds.

    ``log_loss`` and ``auc`` are over all validation rows; the means are over
    the validation builds with at least one failure (``failing_builds``), each
    build's tests ordered by probability (ties in the order the rows came),
    recall at 20% and 33% of each build's tests. None where undefined (no
    failing build, or a single class for the AUC). ``mean_probability``
    beside the validation failure rate shows the calibration."""

    log_loss: float | None
    auc: float | None
    mean_apfd: float | None
    mean_recall_at_20: float | None
    mean_recall_at_33: float | None
    mean_probability: float | None
    failing_builds: int


@dataclass(frozen=True)
class TrainedModel:
    """A trained model with everything the model registry keeps about it."""

    model_text: str
    feature_names: tuple[str, ...]
    params: dict[str, Any]  # the LightGBM parameters of the served model
    best_iteration: int  # rounds chosen by early stopping (and of the refit)
    refit: bool  # whether the served model was refit on every row
    pos_weight: float  # the weight of a failing row (1: not weighted)
    train: BuildSpan
    validation: BuildSpan  # the early-stopping builds
    comparison: BuildSpan | None  # the builds held out from both (comparison_share)
    metrics: ValidationMetrics  # the held-out model on the early-stopping builds
    booster: lgb.Booster = field(repr=False, compare=False)
    # The model fit on the training builds only, at the chosen rounds: the
    # one to measure on the comparison builds (the served one is refit).
    evaluated: LoadedModel = field(repr=False, compare=False)

    @property
    def _spans(self) -> tuple[BuildSpan, ...]:
        return (self.train, self.validation) + (
            () if self.comparison is None else (self.comparison,)
        )

    @property
    def rows(self) -> int:
        return sum(span.rows for span in self._spans)

    @property
    def failures(self) -> int:
        return sum(span.failures for span in self._spans)

    def summary(self) -> dict[str, Any]:
        """Everything but the model text and the booster, as JSON values."""
        return {
            "feature_names": list(self.feature_names),
            "params": dict(self.params),
            "best_iteration": self.best_iteration,
            "refit": self.refit,
            "pos_weight": self.pos_weight,
            "train": vars(self.train).copy(),
            "validation": vars(self.validation).copy(),
            "comparison": None if self.comparison is None else vars(self.comparison).copy(),
            "metrics": vars(self.metrics).copy(),
        }


# --- inputs ------------------------------------------------------------------------


def _matrix(features: npt.ArrayLike, columns: int | None = None) -> Matrix:
    array = np.asarray(features)
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    if array.ndim != 2:
        raise ModelInputError(f"features must be a 2-D matrix, got shape {array.shape}")
    if columns is not None and array.shape[1] != columns:
        raise ModelInputError(f"the model reads {columns} features, got {array.shape[1]}")
    if np.isinf(array).any():
        raise ModelInputError("features must not be infinite (NaN is a missing value)")
    return array


def _labels(labels: npt.ArrayLike, rows: int) -> Labels:
    array = np.asarray(labels)
    if array.shape != (rows,):
        raise ModelInputError(f"labels must have shape ({rows},), got {array.shape}")
    if array.dtype != np.bool_:
        if not np.isin(array, (0, 1)).all():
            raise ModelInputError("labels must be booleans or 0 and 1")
        array = array.astype(np.bool_)
    return array


def _builds(builds: npt.ArrayLike, rows: int) -> Builds:
    array = np.asarray(builds)
    if array.shape != (rows,):
        raise ModelInputError(f"builds must have shape ({rows},), got {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ModelInputError("builds must be integer build indices")
    return array.astype(np.int64)


def _names(feature_names: Sequence[str], columns: int) -> tuple[str, ...]:
    names = tuple(feature_names)
    if len(names) != columns:
        raise ModelInputError(f"{len(names)} feature names for {columns} features")
    if len(set(names)) != len(names):
        raise ModelInputError("feature names must be unique")
    for name in names:
        if not name or _BAD_NAME.search(name):
            raise ModelInputError(
                f"feature name {name!r}: empty, or with whitespace or one of \"',:[]{{}}"
            )
    return names


def _params(params: Mapping[str, Any] | None, seed: int) -> dict[str, Any]:
    given = dict(params or {})
    for key, argument in _OWN_ARGUMENTS.items():
        if key in given:
            raise ModelInputError(f"{key!r} is set through {argument}, not params")
    for key, value in FIXED_PARAMS.items():
        if key in given and given[key] != value:
            raise ModelInputError(f"{key!r} is fixed to {value!r}")
    return {**DEFAULT_PARAMS, **given, **FIXED_PARAMS, "seed": seed}


def _weight(pos_weight: float | Literal["balanced"] | None, labels: Labels) -> float:
    if pos_weight is None:
        return 1.0
    if pos_weight == "balanced":
        positives = int(labels.sum())
        return (labels.size - positives) / positives
    if not (isinstance(pos_weight, int | float) and math.isfinite(pos_weight) and pos_weight > 0):
        raise ModelInputError(f"pos_weight must be a positive number, got {pos_weight!r}")
    return float(pos_weight)


# --- training ----------------------------------------------------------------------


def _newest(distinct: Builds, share: float, keep: int) -> Builds:
    """The newest ``share`` of the builds, at least one, leaving ``keep``."""
    count = min(max(1, round(share * distinct.size)), distinct.size - keep)
    newest: Builds = distinct[-count:]
    return newest


def _split(
    builds: Builds, validation_share: float, min_builds: int, comparison_share: float = 0.0
) -> tuple[Builds, Builds]:
    """The early-stopping builds and the comparison builds: the newest
    ``comparison_share`` of the builds held out from everything, then the
    newest ``validation_share`` of the others."""
    if not 0.0 < validation_share < 1.0:
        raise ModelInputError(f"validation_share must be between 0 and 1, got {validation_share}")
    if not 0.0 <= comparison_share < 1.0:
        raise ModelInputError(f"comparison_share must be in [0, 1), got {comparison_share}")
    distinct = np.unique(builds)
    needed = max(min_builds, 3 if comparison_share else 2)
    if distinct.size < needed:
        raise TooFewBuilds(
            f"{distinct.size} builds: at least {needed} are needed to train and validate"
        )
    compared = _newest(distinct, comparison_share, 2) if comparison_share else distinct[:0]
    validation = _newest(distinct[: distinct.size - compared.size], validation_share, 1)
    return validation, compared


def _span(builds: Builds, labels: Labels) -> BuildSpan:
    return BuildSpan(
        first_build=int(builds.min()),
        last_build=int(builds.max()),
        builds=int(np.unique(builds).size),
        rows=int(builds.size),
        failures=int(labels.sum()),
    )


def _dataset(
    features: Matrix,
    labels: Labels,
    weight: float,
    names: tuple[str, ...],
    params: dict[str, Any],
    reference: lgb.Dataset | None = None,
) -> lgb.Dataset:
    weights = np.where(labels, weight, 1.0) if weight != 1.0 else None
    if reference is not None:
        return lgb.Dataset(features, labels.astype(np.float64), weight=weights, reference=reference)
    return lgb.Dataset(
        features,
        labels.astype(np.float64),
        weight=weights,
        feature_name=list(names),
        params=params,
    )


def _shift_prior(booster: lgb.Booster, weight: float) -> None:
    """Take back the prior shift of weighting failures by ``weight``: the odds
    were multiplied by it, so the raw score (a logit) moves by -log(weight).
    Every row ends in exactly one leaf of the first tree, so adding that to
    each of its leaves moves every prediction, and the contributions' bias
    term, by it."""
    if weight == 1.0:
        return
    shift = -math.log(weight)
    leaves = booster.dump_model(num_iteration=1)["tree_info"][0]["num_leaves"]
    for leaf in range(leaves):
        booster.set_leaf_output(0, leaf, booster.get_leaf_output(0, leaf) + shift)


def build_apfds(scores: Floats, failed: Labels, builds: Builds) -> tuple[Builds, Floats]:
    """Each build with a failure (ascending) and its APFD, the build's rows
    ranked by score (ties in row order), vectorised: `validation_metrics`'s
    APFD, cheap enough to be checked after every boosting round."""
    if scores.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    order = np.lexsort((np.arange(scores.size), -scores, builds))
    sorted_builds, sorted_failed = builds[order], failed[order]
    starts = np.flatnonzero(np.r_[True, sorted_builds[1:] != sorted_builds[:-1]])
    sizes = np.diff(np.r_[starts, order.size])
    position = np.arange(order.size) - np.repeat(starts, sizes) + 1
    group = np.repeat(np.arange(starts.size), sizes)
    failures = np.bincount(group, weights=sorted_failed, minlength=starts.size)
    positions = np.bincount(group, weights=position * sorted_failed, minlength=starts.size)
    failing = failures > 0
    n, m = sizes[failing], failures[failing]
    apfds: Floats = 1.0 - positions[failing] / (n * m) + 1.0 / (2.0 * n)
    failing_builds: Builds = sorted_builds[starts][failing]
    return failing_builds, apfds


def grouped_apfd(scores: Floats, failed: Labels, builds: Builds) -> float | None:
    """The mean of `build_apfds` (None without a failing build)."""
    apfds = build_apfds(scores, failed, builds)[1]
    return float(np.mean(apfds)) if apfds.size else None


def _apfd_metric(builds: Builds) -> Any:
    """A LightGBM evaluation function: the validation rows' mean APFD."""

    def apfd(raw: npt.NDArray[np.float64], data: lgb.Dataset) -> tuple[str, float, bool]:
        failed = np.asarray(data.get_label()) > 0.5
        value = grouped_apfd(np.asarray(raw, dtype=np.float64), failed, builds)
        return "apfd", 0.0 if value is None else value, True

    return apfd


def _sigmoid(raw: Floats) -> Floats:
    result: Floats = np.exp(-np.logaddexp(0.0, -raw))
    return result


def _mean(values: list[float | None]) -> float | None:
    defined = [value for value in values if value is not None]
    return math.fsum(defined) / len(defined) if defined else None


def validation_metrics(
    probabilities: npt.ArrayLike, labels: npt.ArrayLike, builds: npt.ArrayLike
) -> ValidationMetrics:
    """The metrics of ValidationMetrics for any scores of held-out rows (the
    registry compares the active model and the heuristic with them): rows of
    one build are ranked in the order given, ties kept in that order."""
    scores = np.asarray(probabilities, dtype=np.float64)
    if scores.ndim != 1:
        raise ModelInputError(f"probabilities must be one-dimensional, got shape {scores.shape}")
    failed = _labels(labels, scores.size)
    build_of = _builds(builds, scores.size)
    order = np.argsort(build_of, kind="stable")  # rows of a build stay in their order
    sorted_builds = build_of[order]
    starts = np.flatnonzero(np.r_[True, sorted_builds[1:] != sorted_builds[:-1]])
    apfds: list[float | None] = []
    recalls: dict[float, list[float | None]] = {share: [] for share in RECALL_SHARES}
    for rows in np.split(order, starts[1:]) if order.size else []:
        build_failed = failed[rows]
        if not build_failed.any():
            continue
        ranked = build_failed[metrics.order_by_scores(scores[rows])]
        apfds.append(metrics.apfd(ranked))
        for share in RECALL_SHARES:
            recalls[share].append(metrics.recall_at_tests(ranked, share))
    return ValidationMetrics(
        log_loss=metrics.log_loss(failed, scores),
        auc=metrics.roc_auc(failed, scores),
        mean_apfd=_mean(apfds),
        mean_recall_at_20=_mean(recalls[0.2]),
        mean_recall_at_33=_mean(recalls[0.33]),
        mean_probability=float(scores.mean()) if scores.size else None,
        failing_builds=len(apfds),
    )


def train_model(
    features: npt.ArrayLike,
    labels: npt.ArrayLike,
    builds: npt.ArrayLike,
    feature_names: Sequence[str],
    *,
    params: Mapping[str, Any] | None = None,
    validation_share: float = 0.2,
    comparison_share: float = 0.0,
    seed: int = 7,
    refit: bool = True,
    pos_weight: float | Literal["balanced"] | None = None,
    min_builds: int = MIN_BUILDS,
    exclude: Collection[str] = EXCLUDED_FEATURES,
) -> TrainedModel:
    """Train the model on rows of (features, failed, build index), the newest
    builds held out to stop early and to measure it, and the newest
    ``comparison_share`` before those from both (see the module's docstring
    for every choice). The features named in ``exclude`` are left
    out: the model's `feature_names` are the others, in the order given."""
    matrix = _matrix(features)
    rows, columns = matrix.shape
    failed = _labels(labels, rows)
    build_of = _builds(builds, rows)
    all_names = _names(feature_names, columns)
    kept = [column for column, name in enumerate(all_names) if name not in exclude]
    if not kept:
        raise ModelInputError("every feature is excluded: nothing to learn from")
    if len(kept) < columns:
        matrix = matrix[:, kept]
    names = tuple(all_names[column] for column in kept)
    lgb_params = _params(params, seed)

    if not failed.any():
        raise NoPositiveLabels("no row failed: there is nothing to learn")
    validation_builds, comparison_builds = _split(
        build_of, validation_share, min_builds, comparison_share
    )
    held_out = np.isin(build_of, validation_builds)
    compared = np.isin(build_of, comparison_builds)
    training = ~(held_out | compared)
    if not failed[training].any():
        raise NoPositiveLabels(
            "no row of the training builds failed (only the newest builds have failures)"
        )
    if failed[training].all():
        raise ModelInputError("every row of the training builds failed: nothing to tell apart")

    weight = _weight(pos_weight, failed[training])
    train_set = _dataset(matrix[training], failed[training], weight, names, lgb_params)
    valid_set = _dataset(
        matrix[held_out], failed[held_out], weight, names, lgb_params, reference=train_set
    )
    held_out_booster = lgb.train(
        {**lgb_params, "metric": "None"},
        train_set,
        num_boost_round=MAX_ROUNDS,
        valid_sets=[valid_set],
        valid_names=["validation"],
        feval=_apfd_metric(build_of[held_out]),
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    best = held_out_booster.best_iteration or held_out_booster.current_iteration()

    raw = held_out_booster.predict(matrix[held_out], raw_score=True, num_iteration=best)
    probabilities = _sigmoid(np.asarray(raw, dtype=np.float64) - math.log(weight))
    validation = validation_metrics(probabilities, failed[held_out], build_of[held_out])
    _shift_prior(held_out_booster, weight)
    evaluated_text = held_out_booster.model_to_string(num_iteration=best)
    # It has exactly the chosen rounds.
    evaluated = LoadedModel(lgb.Booster(model_str=evaluated_text))

    if refit:
        weight = _weight(pos_weight, failed)
        final_set = _dataset(matrix, failed, weight, names, lgb_params)
        booster = lgb.train(lgb_params, final_set, num_boost_round=best)
        _shift_prior(booster, weight)
        text = booster.model_to_string()
    else:
        text, booster = evaluated_text, evaluated.booster

    served = {**lgb_params, "num_iterations": best}
    if weight != 1.0:
        served["scale_pos_weight"] = weight
    return TrainedModel(
        model_text=text,
        feature_names=names,
        params=served,
        best_iteration=best,
        refit=refit,
        pos_weight=weight,
        train=_span(build_of[training], failed[training]),
        validation=_span(build_of[held_out], failed[held_out]),
        comparison=_span(build_of[compared], failed[compared]) if compared.any() else None,
        metrics=validation,
        booster=booster,
        evaluated=evaluated,
    )


# --- serving -----------------------------------------------------------------------


class LoadedModel:
    """A model read back from its text, ready to score feature matrices whose
    columns are `feature_names`, in that order."""

    def __init__(self, booster: lgb.Booster, *, threads: int = THREADS) -> None:
        self.booster = booster
        self._threads = threads
        self.feature_names: tuple[str, ...] = tuple(booster.feature_name())

    def inputs(self, matrix: FeatureMatrix) -> Matrix:
        """The columns of a feature matrix that this model reads, in its
        order (a model reads a subset of the features, see
        EXCLUDED_FEATURES, and an older model may read other ones)."""
        position = {name: column for column, name in enumerate(matrix.names)}
        missing = [name for name in self.feature_names if name not in position]
        if missing:
            raise ModelInputError(f"the feature matrix lacks {', '.join(missing)}")
        columns = [position[name] for name in self.feature_names]
        if columns == list(range(len(matrix.names))):
            return matrix.values
        selected: Matrix = matrix.values[:, columns]
        return selected

    def _predict(self, features: npt.ArrayLike, **options: bool) -> Floats:
        matrix = _matrix(features, len(self.feature_names))
        result = self.booster.predict(matrix, num_threads=self._threads, **options)
        return np.asarray(result, dtype=np.float64)

    def predict(self, features: npt.ArrayLike) -> Floats:
        """The failure probability of each row."""
        return self._predict(features)

    def raw_scores(self, features: npt.ArrayLike) -> Floats:
        """The raw score (the logit of the probability) of each row."""
        return self._predict(features, raw_score=True)

    def contributions(self, features: npt.ArrayLike) -> Floats:
        """Each feature's contribution to each row's raw score (TreeSHAP):
        n rows by features + 1 columns, the last one the bias (the expected
        raw score); each row sums to its raw score."""
        return self._predict(features, pred_contrib=True)

    def top_contributions(
        self, features: npt.ArrayLike, names: Sequence[str] | None = None, k: int = 3
    ) -> list[list[tuple[str, float]]]:
        """Per row, the (up to) k features that pushed its risk up the most,
        largest first, as (name, contribution); only positive contributions,
        ties in feature order. ``names`` relabels the features (in the model's
        order), by default the model's own names."""
        labels = tuple(names) if names is not None else self.feature_names
        if len(labels) != len(self.feature_names):
            raise ModelInputError(f"{len(labels)} names for {len(self.feature_names)} features")
        if k < 0:
            raise ModelInputError(f"k must not be negative, got {k}")
        contributions = self.contributions(features)[:, :-1]
        top = np.argsort(-contributions, axis=1, kind="stable")[:, :k]
        values = np.take_along_axis(contributions, top, axis=1)
        return [
            [
                (labels[column], value)
                for column, value in zip(columns, row, strict=True)
                if value > 0
            ]
            for columns, row in zip(top.tolist(), values.tolist(), strict=True)
        ]


def _check_text(model_text: str) -> None:
    """Refuse text LightGBM would misread. Its parser trusts the header's
    ``tree_sizes`` (the bytes of each tree) and reads past the end of a
    truncated text, which crashes the process: so the trees must be where the
    sizes say, and the end of the trees right after them."""
    data = model_text.encode()
    start = data.find(b"\nTree=0\n") + 1
    if start == 0:
        raise InvalidModelText("no tree in the model text")
    header = data[:start].decode()
    if not re.search(r"^objective=binary\b", header, flags=re.MULTILINE):
        raise InvalidModelText("not the text of a binary LightGBM model")
    sizes_line = re.search(r"^tree_sizes=([0-9 ]+)$", header, flags=re.MULTILINE)
    if sizes_line is None:
        raise InvalidModelText("no tree sizes in the model text")
    offset = start
    for number, size in enumerate(int(size) for size in sizes_line.group(1).split()):
        if not data.startswith(f"Tree={number}\n".encode(), offset):
            raise InvalidModelText(f"tree {number} is not where the tree sizes put it")
        offset += size
    if not data.startswith(b"end of trees", offset):
        raise InvalidModelText("the model text is cut short or its tree sizes are wrong")


def load_model(model_text: str, *, threads: int = THREADS) -> LoadedModel:
    """The model of a `TrainedModel.model_text` (LightGBM's text format)."""
    _check_text(model_text)
    try:
        booster = lgb.Booster(model_str=model_text)
    except lgb.basic.LightGBMError as error:
        raise InvalidModelText(f"LightGBM cannot read the model: {error}") from error
    return LoadedModel(booster, threads=threads)
