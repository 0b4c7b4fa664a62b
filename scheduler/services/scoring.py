"""Scoring a commit: every active test of its repository gets a failure
probability, a rank, the feature vector that produced it and a reason, stored
as the commit's plan. The scheduler applies its policy to these scores later."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, defer

from scheduler.models import Commit, ModelStatus, Plan, PlanItem, PlanStatus, Repository, RiskModel
from scheduler.models.base import utcnow
from scheduler.planning.records import Payload
from scheduler.risk import explain
from scheduler.risk.calibration import Calibration
from scheduler.risk.choice import TieChoice
from scheduler.risk.columns import ChangeColumns, HistoryColumns, LinkColumns
from scheduler.risk.features import (
    FEATURE_NAMES,
    FeatureMatrix,
    StrongestCoFailure,
    build_features,
    strongest_cofailure,
)
from scheduler.risk.heuristic import heuristic_scores
from scheduler.risk.model import ModelError
from scheduler.risk.paths import PathIndex
from scheduler.risk.serving import LoadedModel, load_model
from scheduler.services import feature_inputs
from scheduler.services.sql import insert_rows_ignoring

log = logging.getLogger(__name__)

TOP_REASONS = 3
# Contributions (TreeSHAP) cost ~0.1-0.5 ms a row: explain the riskiest
# tests with the model's own reasons, the rest with the heuristic's signals.
EXPLAINED_BY_MODEL = 200


class UnreadableModel(ModelError):
    """The active model's row holds text LightGBM cannot load (a corrupt or
    truncated row). Scoring raises it: the plan API then answers its
    fallback (everything runs, in the heuristic order) with this message,
    rather than trimming the suite on a guess, until a training or a
    rollback puts a readable model in its place."""


@dataclass
class ModelCache:
    """What a worker process keeps between tasks: each repository's active
    model, loaded once per version, and its path index."""

    # repository -> ((model row id, its creation time), the loaded model). The
    # time too: SQLite may give a deleted row's id to the next row, and a
    # process may serve several databases (the tests do).
    models: dict[int, tuple[tuple[int, datetime], LoadedModel]] = field(default_factory=dict)
    # repository -> (the model row's identity, why it cannot be loaded).
    unreadable: dict[int, tuple[tuple[int, datetime], str]] = field(default_factory=dict)
    indexes: dict[int, PathIndex] = field(default_factory=dict)

    def model(
        self, session: Session, repository_id: int
    ) -> tuple[RiskModel | None, LoadedModel | None]:
        # The text (megabytes for a big model) is read only when it is new here.
        active = session.scalar(
            select(RiskModel)
            .options(defer(RiskModel.model_text))
            .where(RiskModel.repository_id == repository_id, RiskModel.status == ModelStatus.ACTIVE)
            .order_by(RiskModel.version.desc())
            .limit(1)
        )
        if active is None:
            self.models.pop(repository_id, None)
            return None, None
        cached = self.models.get(repository_id)
        identity = (active.id, active.created_at)
        if cached is None or cached[0] != identity:
            unreadable = self.unreadable.get(repository_id)
            if unreadable is not None and unreadable[0] == identity:
                raise UnreadableModel(unreadable[1])
            try:
                cached = (identity, load_model(active.model_text))
            except ModelError as error:
                # Kept: the next plan fails as fast, without reading the
                # text again, until another model is promoted.
                message = f"the active model v{active.version} cannot be read: {error}"
                self.unreadable[repository_id] = (identity, message)
                log.error("repository %s: %s", repository_id, message)
                raise UnreadableModel(message) from error
            self.models[repository_id] = cached
            self.unreadable.pop(repository_id, None)
            log.info("loaded model v%s of repository %s", active.version, repository_id)
        return active, cached[1]

    def index(
        self, repository_id: int, names: tuple[str, ...], files: tuple[str | None, ...]
    ) -> PathIndex:
        index = self.indexes.get(repository_id)
        if index is None:
            index = PathIndex(names, files)
        elif index.rows(names) is None:
            index = index.covering(names, files)  # indexes only the tests it lacks
        self.indexes[repository_id] = index
        return index


_cache = ModelCache()


@dataclass(frozen=True)
class Scores:
    """A scored candidate set, in the order of `test_ids`."""

    test_ids: list[int]
    matrix: FeatureMatrix
    probabilities: np.ndarray
    reasons: list[list[str]]
    contributions: list[dict[str, float] | None]
    model: RiskModel | None
    # What the reasons name: the changed paths, and per test the one that
    # failed together with it most often.
    change: ChangeColumns = field(default_factory=lambda: ChangeColumns(()))
    strongest: StrongestCoFailure | None = None
    # The statistics the features came from (the policy reads durations,
    # recency and recent outcomes from them).
    history: HistoryColumns | None = None
    # What the same scorer gives a test it has never seen, on this change:
    # a collected test missing from the scores gets it in the plan.
    new_test_probability: float | None = None
    # How the scores were made probabilities (None: served as they are).
    calibration: Calibration | None = None
    # The scorer's own scores, before the calibration and the rate of new
    # tests: what a refit maps, and the order the plan serves (`ranks`).
    raw: np.ndarray | None = None
    # The scorer's score of a test it has never seen, on this change.
    new_test_score: float | None = None
    # Whether equal scores put the younger test first (`ranks`).
    younger_first: bool = True

    def ranks(self) -> np.ndarray:
        """1 for the riskiest: the scorer's order (`ranks`; without the raw
        scores, the probabilities', as plans once did)."""
        return ranks(
            self.probabilities if self.raw is None else self.raw,
            self.matrix,
            younger_first=self.younger_first,
        )

    def new_test_rank(self) -> int | None:
        """Where the scorer puts a test it has never seen (`new_test_rank`)."""
        if self.raw is None or self.new_test_score is None:
            return None
        return new_test_rank(self.raw, self.matrix, self.new_test_score)


def score_tests(
    session: Session,
    *,
    repository_id: int,
    commit_id: int,
    at: datetime,
    cache: ModelCache | None = None,
    explain_scores: bool = True,
) -> Scores:
    """Probabilities for the repository's active tests on this commit, from
    the statistics as they stand (that is, before the commit's own results).
    ``explain_scores=False`` leaves the reasons and contributions empty (a
    backtest orders tests and reads no reason)."""
    cache = cache or _cache
    test_ids, history = feature_inputs.load_history(session, repository_id=repository_id)
    change = feature_inputs.load_change(session, commit_id=commit_id)
    links = feature_inputs.load_links(
        session, repository_id=repository_id, test_ids=test_ids, change=change
    )
    index = cache.index(repository_id, history.names, history.files)
    matrix = build_features(history, change, links, at=at, index=index)
    record, model = cache.model(session, repository_id)
    reasons = explain.heuristic_reasons_of(matrix) if explain_scores else [[] for _ in test_ids]
    contributions: list[dict[str, float] | None] = [None] * len(test_ids)
    if model is not None and not set(model.feature_names) <= set(matrix.names):
        # It reads features this riskrank does not compute (retired ones, or
        # a newer riskrank's): the heuristic serves until a training replaces
        # it (training compares the candidate with the heuristic then).
        missing = sorted(set(model.feature_names) - set(matrix.names))
        log.warning(
            "model v%s of repository %s reads features not computed here (%s): "
            "scored with the heuristic",
            record.version if record is not None else "?",
            repository_id,
            ", ".join(missing),
        )
        model = None
    # The repository's failure rate of new tests is read from its other
    # tests: the unseen one has none of its own.
    unseen = build_features(
        _UNSEEN,
        change,
        LinkColumns.empty(),
        at=at,
        new_rate=float(matrix.column("new_test_rate")[0]) if len(test_ids) else None,
    )
    if model is not None and len(test_ids):
        model_inputs = model.inputs(matrix)
        probabilities = model.predict(model_inputs)
        unseen_score = float(model.predict(model.inputs(unseen))[0])
        if explain_scores:
            riskiest = np.argsort(-probabilities, kind="stable")[:EXPLAINED_BY_MODEL]
            tops = model.top_contributions(model_inputs[riskiest], k=TOP_REASONS)
            for row, top in zip(riskiest.tolist(), tops, strict=True):
                reasons[row] = [name for name, _ in top]
                contributions[row] = {name: round(value, 4) for name, value in top}
    else:
        record, model = None, None
        probabilities = heuristic_scores(matrix)
        unseen_score = float(heuristic_scores(unseen)[0])
    calibration, younger_first = learnt_for(session, repository_id=repository_id, record=record)
    return Scores(
        test_ids,
        matrix,
        calibrated(probabilities, matrix, calibration),
        reasons,
        contributions,
        record,
        change=change,
        strongest=strongest_cofailure(links, len(test_ids)) if explain_scores else None,
        history=history,
        new_test_probability=float(unseen.column("new_test_rate")[0]),
        calibration=calibration,
        raw=probabilities,
        new_test_score=unseen_score,
        younger_first=younger_first,
    )


def learnt_for(
    session: Session, *, repository_id: int, record: RiskModel | None
) -> tuple[Calibration | None, bool]:
    """What training learnt for the scorer: the map that makes its scores
    probabilities (the active model's own, or, scoring with the heuristic,
    the one the repository's newest training learnt for the heuristic;
    None: not learnt yet, or a model trained before riskrank calibrated),
    and whether its plans put the younger of equally scored tests first
    (scheduler.risk.choice.choose_tie; yes until a training chose)."""
    if record is not None:
        metrics = record.metrics or {}
        stored = metrics.get("calibration")
    else:
        metrics = (
            session.scalar(
                select(RiskModel.metrics)
                .where(RiskModel.repository_id == repository_id)
                .order_by(RiskModel.version.desc())
                .limit(1)
            )
            or {}
        )
        stored = metrics.get("heuristic_calibration")
    tie = TieChoice.from_json(metrics.get("tie"))
    return Calibration.from_json(stored), tie is None or tie.younger_first


def calibrated(
    scores: np.ndarray, matrix: FeatureMatrix, calibration: Calibration | None
) -> np.ndarray:
    """The probabilities a plan carries: the scores through the
    calibration (as they are without one), and for a test new to riskrank
    the repository's observed failure rate of new tests (new_test_rate),
    whatever its score: nothing of its own to predict from. That rate is
    a probability, not a place in the order: a plan runs its tests in the
    scorer's order (`ranks` of the scores before this), so a scorer that
    puts new tests first ("new first, then recently failed") still does
    where new tests fail less often than those red in their last build."""
    if len(scores) == 0:
        return scores
    result = calibration.apply(scores) if calibration is not None else scores.astype(np.float64)
    is_new = np.nan_to_num(matrix.column("is_new").astype(np.float64), nan=0.0) == 1.0
    rate = np.nan_to_num(matrix.column("new_test_rate").astype(np.float64), nan=0.0)
    return np.where(is_new, rate, result)


# A test riskrank has never seen: no statistics, no file, and a name that
# names nothing (a collected test missing from the scores is scored as it).
_UNSEEN = HistoryColumns.unseen([""])


def ranks(scores: np.ndarray, matrix: FeatureMatrix, *, younger_first: bool = True) -> np.ndarray:
    """1 for the riskiest: the highest score first (the scorer's own
    scores, see `calibrated`); ties as "new first, then recently failed"
    orders (new first, then the more recent failure, then the higher
    failure rate: the feature new_or_recent), then, where the repository's
    training chose it (`younger_first`, scheduler.risk.choice.choose_tie),
    the fewer runs (of the tests that never failed, the younger first),
    then the test order (the order riskrank first saw them). A
    simple ordering served as a model (scheduler.risk.choice) gives the
    tests of one of its steps the same score: this makes its order the
    ordering's.

    Why the fewer runs: a test that never failed fails for the first time
    more often while it is young. On dune-total's first half (`riskrank
    backtest --half first --retrain-every 50`), 55 of the 175 status
    changes were tests that had never failed, at places 75-116 of about
    100 in "new first, then recently failed" (which leaves them in the
    history's order). With this tie, riskrank against that ordering went
    from +0.0001 [+0.0000, +0.0003] to +0.0144 [-0.0024, +0.0348] in APFD
    (8 builds better, 5 worse) and from -0.0031 [-0.0092, +0.0000] to
    +0.0478 [-0.0129, +0.1180] on status changes (7 better, 6 worse),
    paired per build: ties still, by their intervals."""
    key = np.nan_to_num(matrix.column("new_or_recent").astype(np.float64), nan=0.0)
    runs = np.nan_to_num(matrix.column("log_runs").astype(np.float64), nan=0.0)
    if not younger_first:
        runs = np.zeros(len(scores), dtype=np.float64)
    order = np.lexsort((np.arange(len(scores)), runs, -key, -scores))
    result = np.empty(len(order), dtype=np.int64)
    result[order] = np.arange(1, len(order) + 1)
    return result


def new_test_rank(scores: np.ndarray, matrix: FeatureMatrix, new_score: float) -> int:
    """How many of the scored tests run before a test riskrank has never
    seen, whose score is `new_score`: those scored higher, and those scored
    the same that `ranks` puts first among equals (the tests that never ran
    either: a new test's new_or_recent is the highest)."""
    if len(scores) == 0:
        return 0
    key = np.nan_to_num(matrix.column("new_or_recent").astype(np.float64), nan=0.0)
    return int(np.sum(scores > new_score) + np.sum((scores == new_score) & (key >= 1.0)))


def score_commit(
    session: Session, commit_id: int, *, cache: ModelCache | None = None
) -> Plan | None:
    """The commit's plan: scored now unless a plan from the active model (or
    the heuristic, when there is none) already exists. None for no such commit.

    The commit's row is locked first, so that a worker and the API (or the
    shards of one build asking at once) never store two plans for the same
    commit and model: the second one waits, then finds the first's plan."""
    locked = session.scalar(select(Commit.id).where(Commit.id == commit_id).with_for_update())
    commit = session.get(Commit, commit_id) if locked is not None else None
    if commit is None:
        return None
    record, _ = (cache or _cache).model(session, commit.repository_id)
    model_id = record.id if record is not None else None
    # Read before the statistics: a write between the two leaves the plan
    # a version behind (read again when served), never a version ahead.
    stats_version = session.scalar(
        select(Repository.stats_version).where(Repository.id == commit.repository_id)
    )
    existing = session.scalar(
        select(Plan)
        .where(
            Plan.commit_id == commit_id,
            Plan.model_id.is_(None) if model_id is None else Plan.model_id == model_id,
            Plan.status.in_([PlanStatus.READY, PlanStatus.HEURISTIC]),
            Plan.payload.is_not(None),  # scored before payloads: scored again
            # Scored when no test was known, and outcomes came since: scored again.
            or_(
                Plan.stats_version == stats_version,
                select(PlanItem.id).where(PlanItem.plan_id == Plan.id).exists(),
            ),
        )
        .order_by(Plan.id.desc())
        .limit(1)
    )
    if existing is not None:
        return existing
    scores = score_tests(
        session,
        repository_id=commit.repository_id,
        commit_id=commit_id,
        at=utcnow(),
        cache=cache,
    )
    return store_plan(session, commit=commit, scores=scores, stats_version=stats_version)


def store_plan(
    session: Session, *, commit: Commit, scores: Scores, stats_version: int | None
) -> Plan:
    """The plan's row with its payload, and its items."""
    item_ranks = scores.ranks()
    reasons = explain.sentences(
        scores.reasons, scores.matrix, paths=scores.change.paths, strongest=scores.strongest
    )
    plan = Plan(
        repository_id=commit.repository_id,
        commit_id=commit.id,
        model_id=scores.model.id if scores.model is not None else None,
        status=PlanStatus.READY if scores.model is not None else PlanStatus.HEURISTIC,
        scored_at=utcnow(),
        feature_names=list(FEATURE_NAMES),
        payload=payload_of(scores, item_ranks, reasons).encode(),
        stats_version=stats_version,
    )
    session.add(plan)
    session.flush()
    items = _Items(
        plan_id=plan.id,
        test_ids=scores.test_ids,
        probabilities=scores.probabilities.tolist(),
        ranks=item_ranks.tolist(),
        features=scores.matrix.values.astype("<f4", copy=False),
        contributions=scores.contributions,
        reasons=reasons,
    )
    driver = session.connection().connection.driver_connection
    if isinstance(driver, psycopg.Connection):
        _copy_items(driver, items)
    else:
        insert_rows_ignoring(session, PlanItem, items.rows(), conflict=["plan_id", "test_id"])
    return plan


def payload_of(scores: Scores, item_ranks: np.ndarray, reasons: Sequence[str]) -> Payload:
    """What serving the plan reads, in rank order (see records.Payload)."""
    history = scores.history
    if history is None:
        raise ValueError("scores without their statistics make no plan payload")
    order = np.argsort(item_ranks, kind="stable")
    rows = order.tolist()
    own_file = (
        scores.matrix.column("own_file_changed") == 1.0
        if "own_file_changed" in scores.matrix.names
        else np.zeros(len(rows), dtype=bool)
    )
    return Payload.build(
        test_id=np.asarray(scores.test_ids, dtype=np.int64)[order],
        names=[history.names[row] for row in rows],
        probability=scores.probabilities[order],
        reasons=[reasons[row] for row in rows],
        own_file_changed=own_file[order],
        duration=history.duration_mean[order],
        builds_since_failure=history.builds_since_failure[order],
        runs=history.runs[order],
        recent=[history.recent[row] for row in rows],
        new_test_probability=scores.new_test_probability,
        new_test_rank=scores.new_test_rank(),
    )


@dataclass(frozen=True)
class _Items:
    """A new plan's items as columns, in the order of `test_ids`."""

    plan_id: int
    test_ids: list[int]
    probabilities: list[float]
    ranks: list[int]
    features: np.ndarray  # rows of little-endian float32
    contributions: list[dict[str, float] | None]
    reasons: list[str]

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "plan_id": self.plan_id,
                "test_id": test_id,
                "probability": self.probabilities[row],
                "rank": self.ranks[row],
                "features": self.features[row].tobytes(),
                "contributions": self.contributions[row],
                "reason": self.reasons[row],
            }
            for row, test_id in enumerate(self.test_ids)
        ]


_ITEM_COLUMNS = ("plan_id", "test_id", "probability", "rank", "features", "contributions", "reason")
# COPY's text format: these characters are written as escapes in a value.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    return value.translate(_COPY_ESCAPES)


def _copy_items(driver: psycopg.Connection[Any], items: _Items) -> None:
    """A new plan's items through COPY: ten thousand rows in one stream, where
    even batched INSERTs cost a second. The stream is written as one text
    buffer (COPY's text format: a line a row, tab-separated, \\N for NULL):
    a Python call per row and value was a third of a plan's time
    (benchmarks/scoring.py)."""
    width = items.features.shape[1] * 4 * 2  # hex digits of a row's vector
    vectors = items.features.tobytes().hex()
    # Reasons repeat (one sentence serves many tests): escape each once.
    escaped = {reason: _copy_text(reason) for reason in dict.fromkeys(items.reasons)}
    contributions = [
        "\\N" if value is None else _copy_text(json.dumps(value)) for value in items.contributions
    ]
    plan = items.plan_id
    lines = [
        f"{plan}\t{test_id}\t{probability!r}\t{rank}"
        f"\t\\\\x{vectors[row * width : (row + 1) * width]}"  # bytea's hex form, \ escaped
        f"\t{contributions[row]}\t{escaped[items.reasons[row]]}\n"
        for row, (test_id, probability, rank) in enumerate(
            zip(items.test_ids, items.probabilities, items.ranks, strict=True)
        )
    ]
    statement = f"COPY plan_items ({', '.join(_ITEM_COLUMNS)}) FROM STDIN"
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write("".join(lines))
