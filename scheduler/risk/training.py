"""Training the model (`train_model`): the split in time, early stopping on
the validation builds' APFD, the refit, and the validation metrics the
registry compares models with. Every choice and its measurements:
docs/model.md."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from scheduler.evaluation import metrics
from scheduler.risk.model import THREADS, Floats, Matrix, ModelError, ModelInputError, as_matrix
from scheduler.risk.serving import LoadedModel

Labels: TypeAlias = npt.NDArray[np.bool_]
Builds: TypeAlias = npt.NDArray[np.int64]

MAX_ROUNDS: Final = 1000
EARLY_STOPPING_ROUNDS: Final = 50
# Features the model does not read (see docs/model.md).
EXCLUDED_FEATURES: Final = frozenset({"duration_mean", "new_test_rate"})
MIN_BUILDS: Final = 10
# Shares of a build's tests at which validation reports the recall of failures.
RECALL_SHARES: Final = (0.2, 0.33)

# What a caller may change (any LightGBM parameter, by its canonical name),
# chosen for CI histories: many rows, rare failures, a few strong features,
# and a project that changes under the model (see "An additive model" in
# docs/model.md for the depth).
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


class TooFewBuilds(ModelError):
    """Too few builds to train on and to validate on."""


class NoPositiveLabels(ModelError):
    """No failing row to learn from."""


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


def _row_weights(weights: npt.ArrayLike, rows: int) -> Floats:
    array = np.asarray(weights, dtype=np.float64)
    if array.shape != (rows,):
        raise ModelInputError(f"weights must have shape ({rows},), got {array.shape}")
    if not (np.isfinite(array).all() and (array > 0).all()):
        raise ModelInputError("weights must be finite and positive")
    return array


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


def comparison_builds(builds: npt.ArrayLike, share: float) -> Builds:
    """The builds `train_model(comparison_share=share)` holds out from every
    fit: the newest `share` of the distinct builds, at least one, leaving two
    (none under three builds, or with no share)."""
    distinct = np.unique(np.asarray(builds, dtype=np.int64))
    if share <= 0 or distinct.size < 3:
        return distinct[:0]
    return _newest(distinct, share, 2)


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
    compared = comparison_builds(distinct, comparison_share)
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
    rows: Floats | None = None,
) -> lgb.Dataset:
    """`weight` for a failing row (pos_weight), times each row's own (`rows`)."""
    weights = np.where(labels, weight, 1.0) if weight != 1.0 else None
    if rows is not None:
        weights = rows if weights is None else weights * rows
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


def _platt(raw: Floats, failed: Labels) -> tuple[float, float]:
    """The scale and shift (a, c) that make sigmoid(a * raw + c) the
    probability of failing, by maximum likelihood (Platt scaling: Newton's
    method on the two parameters' log loss). A raw score that does not
    vary, or a single class, gives the base rate (a = 0)."""
    labels = failed.astype(np.float64)
    rate = float(np.clip(labels.mean(), 1e-6, 1 - 1e-6)) if labels.size else 0.5
    a, c = 0.0, math.log(rate / (1 - rate))
    if labels.size == 0 or np.ptp(raw) == 0 or labels.min() == labels.max():
        return a, c
    a = 1.0
    for _ in range(100):
        p = _sigmoid(a * raw + c)
        w = p * (1.0 - p)
        gradient = np.array([np.dot(p - labels, raw), np.sum(p - labels)])
        hessian = np.array([[np.dot(w, raw * raw), np.dot(w, raw)], [np.dot(w, raw), w.sum()]])
        step = np.linalg.solve(hessian + 1e-9 * np.eye(2), gradient)
        a, c = a - float(step[0]), c - float(step[1])
        if np.abs(step).max() < 1e-10:
            break
    return a, c


def _calibrated(booster: lgb.Booster, scale: float, shift: float, rounds: int) -> lgb.Booster:
    """A ranking model as a binary one whose outputs are probabilities:
    every leaf times ``scale``, ``shift`` added to the first tree's (every
    row ends in exactly one of them), and the objective's line saying
    binary, so that LightGBM applies the sigmoid when it predicts."""
    for tree, info in enumerate(booster.dump_model(num_iteration=rounds)["tree_info"]):
        for leaf in range(info["num_leaves"]):
            value = booster.get_leaf_output(tree, leaf) * scale + (shift if tree == 0 else 0.0)
            booster.set_leaf_output(tree, leaf, value)
    text = re.sub(
        r"^objective=.*$",
        "objective=binary sigmoid:1",
        booster.model_to_string(num_iteration=rounds),
        count=1,
        flags=re.MULTILINE,
    )
    return lgb.Booster(model_str=text)


def _groups(builds: Builds) -> npt.NDArray[np.int64]:
    """The sizes of the runs of equal build indexes (rows in build order)."""
    starts = np.flatnonzero(np.r_[True, builds[1:] != builds[:-1]])
    sizes: npt.NDArray[np.int64] = np.diff(np.r_[starts, builds.size]).astype(np.int64)
    return sizes


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
    probabilities: npt.ArrayLike,
    labels: npt.ArrayLike,
    builds: npt.ArrayLike,
    tie: npt.ArrayLike | None = None,
) -> ValidationMetrics:
    """The metrics of ValidationMetrics for any scores of held-out rows (the
    registry compares the active model and the heuristic with them): rows of
    one build are ranked by score, ties by the lower `tie` (the registry
    gives a plan's: scheduler.risk.choice.plan_tie), then in the order
    given."""
    scores = np.asarray(probabilities, dtype=np.float64)
    if scores.ndim != 1:
        raise ModelInputError(f"probabilities must be one-dimensional, got shape {scores.shape}")
    failed = _labels(labels, scores.size)
    build_of = _builds(builds, scores.size)
    ties = None if tie is None else np.asarray(tie, dtype=np.float64)
    order = np.argsort(build_of, kind="stable")  # rows of a build stay in their order
    sorted_builds = build_of[order]
    starts = np.flatnonzero(np.r_[True, sorted_builds[1:] != sorted_builds[:-1]])
    apfds: list[float | None] = []
    recalls: dict[float, list[float | None]] = {share: [] for share in RECALL_SHARES}
    for rows in np.split(order, starts[1:]) if order.size else []:
        build_failed = failed[rows]
        if not build_failed.any():
            continue
        ranked = build_failed[
            metrics.order_by_scores(scores[rows], tie_break=None if ties is None else ties[rows])
        ]
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
    ranking: bool = False,
    weights: npt.ArrayLike | None = None,
) -> TrainedModel:
    """Train the model on rows of (features, failed, build index), the newest
    builds held out to stop early and to measure it, and the newest
    ``comparison_share`` before those from both (see docs/model.md
    for every choice). The features named in ``exclude`` are left
    out: the model's `feature_names` are the others, in the order given.

    With ``ranking``, the objective is LambdaRank with each build as a query
    (the order within a build is what is learnt, not each row's label), and
    the scores are made probabilities by Platt scaling, fit on the
    early-stopping builds for the held-out model and on every row for the
    refit one (``pos_weight`` does not apply).

    ``weights`` (one per row, positive) weigh the rows in the binary
    objective's fits, on top of ``pos_weight``: the selection weights of
    `scheduler.risk.replay.selection_weights`. A ranking objective learns
    the order within each build, and LightGBM weighs its queries, not rows:
    there they do not apply."""
    matrix = as_matrix(features)
    rows, columns = matrix.shape
    failed = _labels(labels, rows)
    build_of = _builds(builds, rows)
    row_weights = None if weights is None or ranking else _row_weights(weights, rows)
    if ranking and rows and np.any(np.diff(build_of) < 0):
        # A query's rows must be together: in build order, stably.
        order = np.argsort(build_of, kind="stable")
        matrix, failed, build_of = matrix[order], failed[order], build_of[order]
    all_names = _names(feature_names, columns)
    kept = [column for column, name in enumerate(all_names) if name not in exclude]
    if not kept:
        raise ModelInputError("every feature is excluded: nothing to learn from")
    if len(kept) < columns:
        matrix = matrix[:, kept]
    names = tuple(all_names[column] for column in kept)
    lgb_params = _params(params, seed)
    if ranking:
        if pos_weight is not None:
            raise ModelInputError("pos_weight does not apply to a ranking objective")
        lgb_params = {**lgb_params, "objective": "lambdarank", "metric": "None"}

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
    train_set = _dataset(
        matrix[training],
        failed[training],
        weight,
        names,
        lgb_params,
        rows=None if row_weights is None else row_weights[training],
    )
    valid_set = _dataset(
        matrix[held_out], failed[held_out], weight, names, lgb_params, reference=train_set
    )
    if ranking:
        # Every pair of a build's tests counts, not only its first 30.
        lgb_params["lambdarank_truncation_level"] = int(_groups(build_of).max())
        train_set.set_group(_groups(build_of[training]))
        valid_set.set_group(_groups(build_of[held_out]))
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

    raw = np.asarray(
        held_out_booster.predict(matrix[held_out], raw_score=True, num_iteration=best),
        dtype=np.float64,
    )
    calibration: tuple[float, float] | None = None
    if ranking:
        calibration = _platt(raw, failed[held_out])
        probabilities = _sigmoid(calibration[0] * raw + calibration[1])
        held_out_booster = _calibrated(held_out_booster, *calibration, best)
    else:
        probabilities = _sigmoid(raw - math.log(weight))
        _shift_prior(held_out_booster, weight)
    validation = validation_metrics(probabilities, failed[held_out], build_of[held_out])
    evaluated_text = held_out_booster.model_to_string(num_iteration=best)
    # It has exactly the chosen rounds.
    evaluated = LoadedModel(lgb.Booster(model_str=evaluated_text))

    if refit:
        weight = _weight(pos_weight, failed)
        final_set = _dataset(matrix, failed, weight, names, lgb_params, rows=row_weights)
        if ranking:
            final_set.set_group(_groups(build_of))
        booster = lgb.train(lgb_params, final_set, num_boost_round=best)
        if ranking:
            raw = np.asarray(booster.predict(matrix, raw_score=True), dtype=np.float64)
            calibration = _platt(raw, failed)
            booster = _calibrated(booster, *calibration, best)
        else:
            _shift_prior(booster, weight)
        text = booster.model_to_string()
    else:
        text, booster = evaluated_text, evaluated.booster

    served = {**lgb_params, "num_iterations": best}
    if calibration is not None:
        served["calibration"] = {"scale": calibration[0], "shift": calibration[1]}
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
