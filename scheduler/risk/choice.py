"""Choosing a repository's scorer on its own history (pure: rows in, a choice out).

A CI history is not like another: on one, a test that failed recently is all
there is to know; on another, failures follow the change and only a model
that links tests to the changed code does well. So no setting is fixed for
every repository. The candidates (`CANDIDATES`) are the simple orderings a
user could write in one line, each as a calibrated one-feature model (its
probabilities are the failure rates learnt for its order), and models of
the whole feature vector with different settings. Each is trained on the
older builds and scored on the newer ones (forward chaining: never on a
build it learnt from), and the one with the best mean APFD there is chosen.
Ties go to the earlier candidate: the simpler one.

`choose` is the whole procedure; the training service (scheduler.services.
training) trains the chosen candidate on every build and decides whether it
replaces the active model, on builds the choice never looked at.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from scheduler.risk.features import FeatureMatrix
from scheduler.risk.model import ModelError
from scheduler.risk.training import (
    DEFAULT_PARAMS,
    EXCLUDED_FEATURES,
    MIN_BUILDS,
    build_apfds,
    train_model,
)

Floats = npt.NDArray[np.float64]
Builds = npt.NDArray[np.int64]

# The share of the builds (the newest) the candidates are scored on.
SELECTION_SHARE: Final = 0.25
# Training stops trying more candidates once this many seconds have gone
# (the simple orderings come first and cost little; the model that was
# chosen is trained again on every build afterwards).
BUDGET_SECONDS: Final = 120.0


@dataclass(frozen=True)
class Candidate:
    """A way to score tests: LightGBM settings, the features it reads (None:
    every feature the model reads, see EXCLUDED_FEATURES) and, for a simple
    ordering, the direction of its one feature (+1: a higher value runs
    first; -1: a lower one)."""

    name: str
    description: str
    params: Mapping[str, Any] = field(default_factory=dict)
    features: tuple[str, ...] | None = None
    direction: int = 0
    ranking: bool = False  # LambdaRank, each build a query (risk.training)

    @property
    def ordering(self) -> bool:
        """Whether it is a simple ordering (one feature, in one direction)."""
        return self.direction != 0

    def training_params(self) -> dict[str, Any]:
        """The LightGBM parameters it trains with."""
        params = {**DEFAULT_PARAMS, **self.params}
        if self.ordering:
            # One learnt step per bin of its feature, never against its order.
            params["monotone_constraints"] = [self.direction]
        return params

    def excluded(self, feature_names: Sequence[str]) -> frozenset[str]:
        """The features it does not read, of `feature_names`."""
        if self.features is None:
            return frozenset(EXCLUDED_FEATURES)
        return frozenset(name for name in feature_names if name not in self.features)


# A one-feature model ranks by its feature: trees of one split, and leaves
# small enough to learn a step where the failure rate changes.
_ONE_FEATURE: Final[Mapping[str, Any]] = {"num_leaves": 2, "max_depth": 1, "min_data_in_leaf": 20}

CANDIDATES: Final[tuple[Candidate, ...]] = (
    Candidate(
        "new first, then recently failed",
        "the simple ordering: tests that never ran first, then by builds since the last "
        "failure, then by failure rate; probabilities learnt for its order",
        _ONE_FEATURE,
        ("new_or_recent",),
        +1,
    ),
    Candidate(
        "recently failed first",
        "the simple ordering: by builds since the last failure (never failed last); "
        "probabilities learnt for its order",
        _ONE_FEATURE,
        ("builds_since_failure",),
        -1,
    ),
    Candidate(
        "failure rate",
        "the simple ordering: highest failure rate first; probabilities learnt for its order",
        _ONE_FEATURE,
        ("fail_rate_all",),
        +1,
    ),
    Candidate(
        "additive model",
        "every feature, trees of one split (one learnt curve per feature, no interactions)",
    ),
    Candidate(
        "trees of depth 3",
        "every feature, trees of up to 8 leaves (interactions between features)",
        {"num_leaves": 8, "max_depth": 3, "min_data_in_leaf": 50},
    ),
    Candidate(
        "ranking",
        "every feature, trees of one split, learning each build's order (LambdaRank) "
        "rather than each test's outcome; probabilities by Platt scaling",
        ranking=True,
    ),
)


def candidate(name: str) -> Candidate:
    """The candidate called `name`."""
    for each in CANDIDATES:
        if each.name == name:
            return each
    raise KeyError(name)


@dataclass(frozen=True)
class Trial:
    """One candidate, trained on the older builds, on the newer ones."""

    name: str
    mean_apfd: float | None  # over the failing builds scored
    builds: Builds  # the failing builds scored, ascending
    apfds: Floats  # their APFD, in the same order
    seconds: float
    error: str | None = None  # why it could not be trained

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mean_apfd": None if self.mean_apfd is None else round(self.mean_apfd, 6),
            "failing_builds": int(self.builds.size),
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


@dataclass(frozen=True)
class Choice:
    """The candidates' trials and the one chosen (None: none could be
    trained, or no scored build failed)."""

    chosen: Candidate | None
    trials: tuple[Trial, ...]
    skipped: tuple[str, ...]  # not tried: the budget was spent
    first_build: int | None  # the builds scored (indexes)
    last_build: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "chosen": None if self.chosen is None else self.chosen.name,
            "trials": [trial.as_json() for trial in self.trials],
            "skipped": list(self.skipped),
            "scored_builds": None
            if self.first_build is None
            else {"first_index": self.first_build, "last_index": self.last_build},
        }


def _selection(build_of: Builds, share: float) -> Builds:
    distinct = np.unique(build_of)
    count = min(max(1, round(share * distinct.size)), max(distinct.size - MIN_BUILDS, 0))
    selected: Builds = distinct[distinct.size - count :] if count else distinct[:0]
    return selected


def choose(
    features: npt.ArrayLike,
    labels: npt.ArrayLike,
    builds: npt.ArrayLike,
    feature_names: Sequence[str],
    *,
    candidates: Sequence[Candidate] = CANDIDATES,
    share: float = SELECTION_SHARE,
    budget_seconds: float = BUDGET_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    younger_first: bool = True,
) -> Choice:
    """Train every candidate on the builds before the newest `share` of them
    and score it there; the best mean APFD is chosen (ties: the earlier
    candidate). Candidates are tried in the order given until
    `budget_seconds` have gone. Equal scores are ordered as plans order
    them (`plan_tie`, with the repository's `younger_first`)."""
    matrix = np.asarray(features)
    names = tuple(feature_names)
    failed = np.asarray(labels, dtype=bool)
    build_of = np.asarray(builds, dtype=np.int64)
    scored = _selection(build_of, share)
    if scored.size == 0:
        return Choice(None, (), (), None, None)
    first = int(scored[0])
    older, newer = build_of < first, build_of >= first
    tie = plan_tie(matrix, names, younger_first=younger_first)
    scored_rows = FeatureMatrix(("",) * int(newer.sum()), matrix[newer], names)
    trials: list[Trial] = []
    skipped: list[str] = []
    started = clock()
    for each in candidates:
        if clock() - started > budget_seconds:
            skipped.append(each.name)
            continue
        began = clock()
        try:
            trained = train_model(
                matrix[older],
                failed[older],
                build_of[older],
                feature_names,
                params=each.training_params(),
                refit=False,
                ranking=each.ranking,
                exclude=each.excluded(feature_names),
            )
        except ModelError as error:
            trials.append(
                Trial(each.name, None, build_of[:0], np.zeros(0), clock() - began, str(error))
            )
            continue
        model = trained.evaluated
        scores = model.predict(model.inputs(scored_rows))
        failing, apfds = build_apfds(
            served_order(scores, tie[newer], build_of[newer]), failed[newer], build_of[newer]
        )
        mean = float(np.mean(apfds)) if apfds.size else None
        trials.append(Trial(each.name, mean, failing, apfds, clock() - began))
    best: Trial | None = None
    for trial in trials:
        if trial.mean_apfd is not None and (
            best is None or best.mean_apfd is None or trial.mean_apfd > best.mean_apfd + 1e-12
        ):
            best = trial
    chosen = None if best is None else next(c for c in candidates if c.name == best.name)
    return Choice(chosen, tuple(trials), tuple(skipped), first, int(scored[-1]))


def plan_tie(
    features: npt.ArrayLike, feature_names: Sequence[str], *, younger_first: bool = True
) -> Floats:
    """Per row, what breaks a tie between equal scores in a plan (the lower
    first), as scheduler.services.scoring.ranks does: the higher
    new_or_recent, then (`younger_first`) the lower log_runs, as one key
    (each row's place in that order; 0 everywhere without new_or_recent)."""
    matrix = np.asarray(features)
    if "new_or_recent" not in feature_names:
        return np.zeros(matrix.shape[0], dtype=np.float64)
    names = list(feature_names)

    def column(name: str) -> Floats:
        values: Floats = np.nan_to_num(matrix[:, names.index(name)].astype(np.float64), nan=0.0)
        return values

    runs = (
        column("log_runs")
        if younger_first and "log_runs" in names
        else np.zeros(matrix.shape[0], dtype=np.float64)
    )
    order = np.lexsort((runs, -column("new_or_recent")))
    keys = np.stack([-column("new_or_recent")[order], runs[order]])
    # Rows equal in both keys share a place.
    step = np.r_[True, (np.diff(keys, axis=1) != 0).any(axis=0)] if order.size else np.zeros(0)
    tie: Floats = np.empty(matrix.shape[0], dtype=np.float64)
    tie[order] = np.cumsum(step) - 1.0
    return tie


def served_order(scores: Floats, tie: Floats, builds: Builds) -> Floats:
    """Scores whose order within each build is the one a plan serves (the
    highest probability first; ties: the lower `tie`, then the order given),
    without ties: a simple ordering's model gives the tests of one bin the
    same probability, and a plan breaks that tie as "new first, then
    recently failed" does."""
    order = np.lexsort((np.arange(scores.size), tie, -scores, builds))
    position = np.empty(scores.size, dtype=np.float64)
    position[order] = np.arange(scores.size, dtype=np.float64)
    served: Floats = -position
    return served


@dataclass(frozen=True)
class TieChoice:
    """How a repository's plans order tests of equal score that never
    failed: the younger first (fewer runs), or in the order riskrank first
    saw them; chosen by the mean APFD of the scorer's served order on the
    builds given (`choose_tie`)."""

    younger_first: bool
    younger_apfd: float | None  # mean over the failing builds, younger first
    seen_apfd: float | None  # the same, in the order first seen
    failing_builds: int

    def as_json(self) -> dict[str, Any]:
        return {
            "younger_first": self.younger_first,
            "mean_apfd": {
                "younger first": None if self.younger_apfd is None else round(self.younger_apfd, 6),
                "first seen first": None if self.seen_apfd is None else round(self.seen_apfd, 6),
            },
            "failing_builds": self.failing_builds,
        }

    @classmethod
    def from_json(cls, stored: Mapping[str, Any] | None) -> TieChoice | None:
        if not stored or "younger_first" not in stored:
            return None
        means = stored.get("mean_apfd") or {}
        return cls(
            bool(stored["younger_first"]),
            means.get("younger first"),
            means.get("first seen first"),
            int(stored.get("failing_builds") or 0),
        )


def choose_tie(
    scores: npt.ArrayLike,
    features: npt.ArrayLike,
    labels: npt.ArrayLike,
    builds: npt.ArrayLike,
    feature_names: Sequence[str],
) -> TieChoice:
    """Whether plans put the younger of equally scored tests first, chosen
    on these builds (the repository's, scored by the scorer that serves
    when no model does: most of a plan's ties are its tests that never
    failed). Younger first (the default: on dune-total's first half, 55 of
    175 status changes were tests that had never failed, and the younger
    came first) stays unless the order first seen has the higher mean APFD.

    Chosen on the first halves of the shared histories (`benchmarks/
    effectiveness.py --half first`), riskrank minus the strongest simple
    ordering per failing build, pooled over 849 failing builds (APFD; APFD
    and recall at 33% of status changes): the younger always first
    +0.0103, +0.0331, +0.0523; this choice on every build +0.0104,
    +0.0302, +0.0543, and IOF/ROL -0.0052 [-0.0127, +0.0012] became
    +0.0005 [-0.0073, +0.0088] (recall at 33% of all failures -0.0140
    [-0.0295, -0.0005], behind, became a tie). Tried: on the newest
    quarter of the builds, +0.0092, +0.0269, +0.0536 (the choice flipped
    with the noise of a few builds); switching only when the paired
    interval is above 0, +0.0104, +0.0333, +0.0563, but IOF/ROL stayed
    where it was (-0.0055)."""
    values = np.asarray(scores, dtype=np.float64)
    failed = np.asarray(labels, dtype=bool)
    build_of = np.asarray(builds, dtype=np.int64)
    means: dict[bool, float | None] = {}
    failing = 0
    for younger in (True, False):
        tie = plan_tie(features, feature_names, younger_first=younger)
        scored, apfds = build_apfds(served_order(values, tie, build_of), failed, build_of)
        means[younger] = float(np.mean(apfds)) if apfds.size else None
        failing = int(scored.size)
    younger_apfd, seen_apfd = means[True], means[False]
    younger_first = not (
        younger_apfd is not None and seen_apfd is not None and seen_apfd > younger_apfd + 1e-12
    )
    return TieChoice(younger_first, younger_apfd, seen_apfd, failing)
