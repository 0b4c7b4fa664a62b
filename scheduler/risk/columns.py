"""The plain inputs of the feature matrix (`scheduler.risk.features`), as
the queries (`scheduler.services.feature_inputs`) and the replay fill them:

- `HistoryColumns`: the candidate tests and their `test_stats` row (a test
  without one, new to riskrank, has runs 0 and nothing known);
- `ChangeColumns`: the commit's changed paths and changed lines;
- `LinkColumns`: the `file_test_links` rows between those tests and paths."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.float64]
IndexArray: TypeAlias = npt.NDArray[np.intp]
BoolArray: TypeAlias = npt.NDArray[np.bool_]


class FeatureInputError(ValueError):
    """Inputs that do not fit together (lengths, indexes, duplicate paths)."""


def _floats(values: Iterable[float | int | None], fill: float) -> FloatArray:
    return np.fromiter((fill if value is None else value for value in values), dtype=np.float64)


def epoch_seconds(moment: datetime) -> float:
    # Naive times are UTC: that is what SQLite gives back for riskrank's columns.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True, eq=False)
class HistoryColumns:
    """The candidate tests, one entry per test in every field, in row order.

    Counts are float64 arrays; NaN in builds_since_failure means "never
    failed", in duration_mean and first_seen "unknown". first_seen is in
    seconds since the epoch (UTC)."""

    names: tuple[str, ...]  # canonical test ids (known_tests.name)
    files: tuple[str | None, ...]  # known_tests.file
    runs: FloatArray
    failures: FloatArray
    recent: tuple[str, ...]  # test_stats.recent: ASCII letters P, F or E, newest first
    builds_since_failure: FloatArray
    flips: FloatArray
    flaky_runs: FloatArray
    duration_mean: FloatArray
    first_seen: FloatArray

    def __post_init__(self) -> None:
        n = len(self.names)
        arrays = ("runs", "failures", "builds_since_failure", "flips", "flaky_runs")
        for name in (*arrays, "duration_mean", "first_seen"):
            if getattr(self, name).shape != (n,):
                raise FeatureInputError(f"{name} must have shape ({n},)")
        if len(self.files) != n or len(self.recent) != n:
            raise FeatureInputError(f"files and recent must have {n} entries")

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_sequences(
        cls,
        *,
        names: Sequence[str],
        files: Sequence[str | None],
        runs: Sequence[int | None],
        failures: Sequence[int | None],
        recent: Sequence[str | None],
        builds_since_failure: Sequence[int | float | None],
        flips: Sequence[int | None],
        flaky_runs: Sequence[int | None],
        duration_mean: Sequence[float | None],
        first_seen: Sequence[datetime | float | None],
    ) -> HistoryColumns:
        """From plain values, as an outer join of known_tests and test_stats
        gives them: None for a count or `recent` is a test without statistics
        (0, ""), None elsewhere is unknown (NaN); a datetime without a zone is
        UTC."""
        return cls(
            names=tuple(names),
            files=tuple(files),
            runs=_floats(runs, 0.0),
            failures=_floats(failures, 0.0),
            recent=tuple(letters or "" for letters in recent),
            builds_since_failure=_floats(builds_since_failure, math.nan),
            flips=_floats(flips, 0.0),
            flaky_runs=_floats(flaky_runs, 0.0),
            duration_mean=_floats(duration_mean, math.nan),
            first_seen=_floats(
                (epoch_seconds(v) if isinstance(v, datetime) else v for v in first_seen),
                math.nan,
            ),
        )

    @classmethod
    def unseen(
        cls, names: Sequence[str], files: Sequence[str | None] | None = None
    ) -> HistoryColumns:
        """Tests riskrank has no statistics for (never run, nothing known)."""
        none = [None] * len(names)
        return cls.from_sequences(
            names=names,
            files=none if files is None else files,
            runs=none,
            failures=none,
            recent=none,
            builds_since_failure=none,
            flips=none,
            flaky_runs=none,
            duration_mean=none,
            first_seen=none,
        )


@dataclass(frozen=True)
class ChangeColumns:
    """What the commit changed: distinct repository paths (`/` separators, as
    commits keep them) and the changed lines, None when the provider did not
    say."""

    paths: tuple[str, ...]
    changed_lines: int | None = None
    # The functions and classes the change touched, distinct and sorted:
    # () when its files' hunks name none (or were not sent).
    symbols: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(set(self.paths)) != len(self.paths):
            raise FeatureInputError("changed paths must be distinct (links point at one each)")

    @classmethod
    def of(
        cls, paths: Iterable[str], changed_lines: int | None = None, symbols: Iterable[str] = ()
    ) -> ChangeColumns:
        return cls(tuple(paths), changed_lines, tuple(sorted(set(symbols))))


def _indexes(values: npt.ArrayLike) -> IndexArray:
    return np.asarray(values, dtype=np.intp).reshape(-1)


@dataclass(frozen=True, eq=False)
class LinkColumns:
    """file_test_links between the candidates and the changed paths: one entry
    per (test, path) pair that has a row, as parallel arrays. test_index is a
    row of HistoryColumns, path_index a position in ChangeColumns.paths."""

    test_index: IndexArray
    path_index: IndexArray
    changed_together: FloatArray
    failed_together: FloatArray

    def __post_init__(self) -> None:
        n = self.test_index.shape
        if len(n) != 1 or any(
            array.shape != n
            for array in (self.path_index, self.changed_together, self.failed_together)
        ):
            raise FeatureInputError("link columns must be 1-d arrays of one length")

    def __len__(self) -> int:
        return int(self.test_index.shape[0])

    @classmethod
    def from_sequences(
        cls,
        *,
        test_index: npt.ArrayLike,
        path_index: npt.ArrayLike,
        changed_together: npt.ArrayLike,
        failed_together: npt.ArrayLike,
    ) -> LinkColumns:
        return cls(
            _indexes(test_index),
            _indexes(path_index),
            np.asarray(changed_together, dtype=np.float64).reshape(-1),
            np.asarray(failed_together, dtype=np.float64).reshape(-1),
        )

    @classmethod
    def empty(cls) -> LinkColumns:
        return cls.from_sequences(
            test_index=[], path_index=[], changed_together=[], failed_together=[]
        )
