"""The LightGBM model of a test's failure (pure: arrays in, arrays and text
out): what training (`scheduler.risk.training`) and serving
(`scheduler.risk.serving`) share. How it trains, and why: docs/model.md."""

from __future__ import annotations

from typing import Final, TypeAlias

import numpy as np
import numpy.typing as npt

Floats: TypeAlias = npt.NDArray[np.float64]
Matrix: TypeAlias = npt.NDArray[np.float32] | npt.NDArray[np.float64]

THREADS: Final = 2


class ModelError(Exception):
    """A model that cannot be trained or loaded as asked."""


class ModelInputError(ModelError, ValueError):
    """Arrays or parameters of the wrong shape or kind."""


def as_matrix(features: npt.ArrayLike, columns: int | None = None) -> Matrix:
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
