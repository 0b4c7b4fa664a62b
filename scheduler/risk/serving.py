"""Serving the model: `load_model` reads the text a training kept
(LightGBM's own format, checked first) back into a `LoadedModel`, which
predicts exactly what the trained booster predicted, with per-feature
contributions for the reasons."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from scheduler.risk.features import FeatureMatrix
from scheduler.risk.model import THREADS, Floats, Matrix, ModelError, ModelInputError, as_matrix

if TYPE_CHECKING:  # imported when a model is loaded: LightGBM and SciPy cost 0.4 s
    import lightgbm as lgb


class InvalidModelText(ModelError):
    """Text that is not a binary LightGBM model."""


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
        matrix = as_matrix(features, len(self.feature_names))
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
    import lightgbm as lgb

    try:
        booster = lgb.Booster(model_str=model_text)
    except lgb.basic.LightGBMError as error:
        raise InvalidModelText(f"LightGBM cannot read the model: {error}") from error
    return LoadedModel(booster, threads=threads)
