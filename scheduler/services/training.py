"""Training a repository's model and keeping the registry: every trained
model is a row of risk_models; a candidate becomes the active model only if
it is ahead of the active one (or, for a repository's first model, of the
heuristic) on held-out builds that neither was trained on, by a paired
bootstrap interval whose lower bound is above 0. An active model is held
to the same bar at every training: when the heuristic is ahead of it on the
builds since its own training, it is retired and the heuristic serves (and
is the bar the candidate must clear)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeAlias

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler import metrics
from scheduler.evaluation import paired
from scheduler.models import ModelStatus, Repository, RiskModel, RunStatus, SuiteRun
from scheduler.models.base import utcnow
from scheduler.risk import calibration, choice, replay
from scheduler.risk.features import FEATURE_NAMES, FeatureMatrix
from scheduler.risk.heuristic import HEURISTICS, heuristic_scores
from scheduler.risk.model import ModelError
from scheduler.risk.serving import load_model
from scheduler.risk.training import (
    BuildSpan,
    build_apfds,
    comparison_builds,
    train_model,
    validation_metrics,
)
from scheduler.services.builds import load_builds

log = logging.getLogger(__name__)

# The newest share of the history that no fit of the candidate sees: the
# builds it is compared on (those after the active model's training too).
COMPARISON_SHARE: Final = 0.2


class TrainingError(Exception):
    """Training that could not happen (too little history, no failures…)."""


class RegistryError(Exception):
    """A registry command that cannot be carried out."""


@dataclass(frozen=True)
class TrainingOutcome:
    model: RiskModel
    promoted: bool
    reason: str
    # The active model was retired (the heuristic was ahead of it).
    retired: bool = False


def active_model(session: Session, repository_id: int) -> RiskModel | None:
    return session.scalar(
        select(RiskModel)
        .where(RiskModel.repository_id == repository_id, RiskModel.status == ModelStatus.ACTIVE)
        .order_by(RiskModel.version.desc())
        .limit(1)
    )


def _lock(session: Session, repository_id: int) -> bool:
    """One training at a time per repository: a row lock on the repository
    (SKIP LOCKED on PostgreSQL; SQLite runs one writer at a time anyway)."""
    locked = session.scalar(
        select(Repository.id)
        .where(Repository.id == repository_id)
        .with_for_update(skip_locked=True)
    )
    return locked is not None


def _point(builds: list[replay.Build], index: int) -> dict[str, Any]:
    """A build of the history, as the registry records it: its key and time
    (which outlive this replay) and its index in this replay."""
    build = builds[index]
    return {"build": build.key, "at": build.at.isoformat(), "index": index}


def _range(builds: list[replay.Build], span: BuildSpan | None) -> dict[str, Any] | None:
    if span is None:
        return None
    first, last = _point(builds, span.first_build), _point(builds, span.last_build)
    return {
        "first_build": first["build"],
        "last_build": last["build"],
        "first_at": first["at"],
        "last_at": last["at"],
        "first_index": span.first_build,
        "last_index": span.last_build,
        "builds": span.builds,
        "rows": span.rows,
        "failures": span.failures,
    }


def _last_seen(record: RiskModel, builds: list[replay.Build]) -> int:
    """The index, in this replay, of the newest build a model was trained
    on: by its recorded key, else (older records, a build since deleted) the
    last build at or before its recorded training time, or its creation.
    -1: before every build."""
    seen = (record.metrics or {}).get("trained_through") or {}
    key = seen.get("build")
    for index in range(len(builds) - 1, -1, -1):
        if builds[index].key == key:
            return index
    # Without a training time, when it was made bounds what it could see.
    until = record.train_to or record.created_at
    return max((i for i, build in enumerate(builds) if build.at <= until), default=-1)


def interval_phrase(comparison: Mapping[str, Any]) -> str:
    """A paired comparison (`paired.Paired.as_json()`, as the registry keeps
    it) in words: "+0.0040 [-0.0020, +0.0100] over 120 builds"."""
    if comparison.get("mean_difference") is None:
        return "no build to compare on"
    builds = comparison["builds"]
    return (
        f"{comparison['mean_difference']:+.4f} [{comparison['low']:+.4f}, "
        f"{comparison['high']:+.4f}] over {builds} build{'' if builds == 1 else 's'}"
    )


def _comparison_reason(against: str, comparison: paired.Paired, builds: int) -> str:
    if comparison.verdict == paired.AHEAD:
        return f"ahead of {against}: {interval_phrase(comparison.as_json())}"
    if comparison.builds == 0:
        if builds == 0:
            return f"not compared with {against}: it was trained on every held-out build"
        return f"not compared with {against}: no failure in the {builds} held-out builds"
    return f"not ahead of {against}: {interval_phrase(comparison.as_json())}"


# What is trained when the choice has nothing to go by (no failing build
# among the builds it scores): the model of every feature.
DEFAULT_SCORER: Final = "additive model"


def choose_scorer(
    features: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    indexes: np.ndarray[Any, Any],
    *,
    younger_first: bool = True,
) -> choice.Choice:
    """The repository's scorer, chosen on the builds before the newest
    COMPARISON_SHARE of them (those decide the promotion, so the choice
    must not have looked at them)."""
    held_out = comparison_builds(indexes, COMPARISON_SHARE)
    if held_out.size == 0:
        return choice.Choice(None, (), (), None, None)
    older = indexes < held_out[0]
    return choice.choose(
        features[older], labels[older], indexes[older], FEATURE_NAMES, younger_first=younger_first
    )


def choose_tie(
    features: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], indexes: np.ndarray[Any, Any]
) -> choice.TieChoice:
    """How the repository's plans break ties (scheduler.risk.choice.
    choose_tie), chosen with the heuristic's scores on every build: the
    heuristic learns nothing from them, and a quarter of them was too
    few (the choice flipped with the builds' noise)."""
    matrix = FeatureMatrix(tests=("",) * len(labels), values=features)
    return choice.choose_tie(heuristic_scores(matrix), features, labels, indexes, FEATURE_NAMES)


def _calibration_rows(features: np.ndarray[Any, Any], rows: np.ndarray[Any, Any]) -> Any:
    """Of `rows`, those a calibration learns from: not a new test's (a
    plan gives a test new to riskrank the repository's failure rate of new
    tests, whatever its score)."""
    is_new = np.nan_to_num(features[:, FEATURE_NAMES.index("is_new")], nan=0.0) == 1.0
    return rows & ~is_new


def _heuristic_calibration_on_every_build(
    features: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], indexes: np.ndarray[Any, Any]
) -> calibration.Calibration | None:
    """The heuristic's map from every build, when the held-out ones are
    too few or without a failure: the heuristic learns nothing, so every
    build is held out from it (older, so less like the next commit, but
    better than scores that are no probability)."""
    rows = _calibration_rows(features, np.ones(len(labels), dtype=bool))
    matrix = FeatureMatrix(tests=("",) * int(rows.sum()), values=features[rows])
    return calibration.fit(heuristic_scores(matrix), labels[rows], indexes[rows])


def _refresh_calibration(
    record: RiskModel,
    scores: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    builds: np.ndarray[Any, Any],
    features: np.ndarray[Any, Any],
) -> None:
    """The active model kept its place: its calibration is learnt again
    on the builds it was not trained on, up to the newest, so that its
    probabilities follow the repository's recent outcomes between models."""
    rows = _calibration_rows(features, np.ones(len(labels), dtype=bool))
    refreshed = calibration.fit(scores[rows], labels[rows], builds[rows])
    if refreshed is not None:
        record.metrics = {
            **(record.metrics or {}),
            "calibration": refreshed.as_json(),
            "calibration_refreshed_at": utcnow().isoformat(),
        }


def train_repository(
    session: Session,
    *,
    repository_id: int,
    progress: Progress | None = None,
    selection: Selection | None = None,
) -> TrainingOutcome | None:
    """`train`, counted (riskrank_trainings_total, riskrank_training_seconds
    and, when it promotes, riskrank_model_promotions_total; when it retires
    the active model, riskrank_model_retirements_total): a failure at
    once, a model once it is committed. Another training holding the lock
    is not a training."""
    started = time.perf_counter()
    slug = metrics.repository_label(session, repository_id)
    try:
        outcome = train(
            session, repository_id=repository_id, progress=progress, selection=selection
        )
    except Exception:
        metrics.TRAININGS.labels(repository=slug, outcome="failed").inc()
        metrics.TRAINING_SECONDS.labels(outcome="failed").observe(time.perf_counter() - started)
        raise
    if outcome is None:
        return None
    result = "promoted" if outcome.promoted else "kept"
    metrics.after_commit(session, metrics.TRAININGS.labels(repository=slug, outcome=result))
    metrics.observe_after_commit(
        session, metrics.TRAINING_SECONDS.labels(outcome=result), time.perf_counter() - started
    )
    if outcome.promoted:
        metrics.after_commit(session, metrics.PROMOTIONS.labels(by="training"))
    if outcome.retired:
        metrics.after_commit(session, metrics.RETIREMENTS)
    return outcome


# Told what training is doing, for a person watching (`riskrank train`).
Progress: TypeAlias = Callable[[str], None]
# How many steps `train` tells, in order: a bar counts them.
STEPS = 5
# The exploration draws of builds whose plans are not stored (a backtest's,
# kept in memory): build key (scheduler.services.builds) -> test -> p.
Selection: TypeAlias = Mapping[str, Mapping[str, float]]


def _silent(_step: str) -> None:
    pass


def train(
    session: Session,
    *,
    repository_id: int,
    progress: Progress | None = None,
    selection: Selection | None = None,
) -> TrainingOutcome | None:
    """Train on the whole history, replayed in time order; None when another
    training of the repository holds the lock.

    The newest COMPARISON_SHARE of the builds is held out from the
    candidate's training and early stopping; of those, the builds after the
    active model's own training are where the candidate, as trained on the
    older builds, and the active model (the heuristic when there is none)
    are scored. The per-build APFD differences decide: promoted only when
    their bootstrap 95% interval is above 0. The served model is then refit
    on every build, the held-out ones included."""
    step = progress or _silent
    if not _lock(session, repository_id):
        return None
    step("loading the history")
    builds = load_builds(session, repository_id=repository_id)
    for build in builds:
        drawn = (selection or {}).get(build.key, {})
        build.selection.update((n, p) for n, p in drawn.items() if n in build.outcomes)
    step(f"replaying {len(builds):,} builds")
    features, labels, indexes = replay.training_rows(builds)
    if len(labels) == 0:
        raise TrainingError("no test outcomes yet: import a history or send results first")
    # Rows of the plans' exploration samples stand for the tests the budget
    # dropped (none: every row counts once, as without plans).
    weights = replay.selection_weights(builds)
    explored = int(sum(len(build.selection) for build in builds))
    step(f"choosing a scorer on {len(labels):,} rows")
    tie_choice = choose_tie(features, labels, indexes)
    picked = choose_scorer(features, labels, indexes, younger_first=tie_choice.younger_first)
    scorer = picked.chosen or choice.candidate(DEFAULT_SCORER)
    step(f"training {scorer.name}")
    try:
        trained = train_model(
            features,
            labels,
            indexes,
            FEATURE_NAMES,
            comparison_share=COMPARISON_SHARE,
            params=scorer.training_params(),
            exclude=scorer.excluded(FEATURE_NAMES),
            ranking=scorer.ranking,
            weights=weights if explored else None,
        )
    except ModelError as error:
        raise TrainingError(str(error)) from error

    step("comparing with the active model")
    incumbent = active_model(session, repository_id)
    if incumbent is not None and not set(incumbent.feature_names) <= set(FEATURE_NAMES):
        rival, rival_seen = None, None  # it cannot score these builds: the heuristic is the bar
    else:
        rival = incumbent
        rival_seen = None if incumbent is None else _last_seen(incumbent, builds)
    cutoff = max(trained.validation.last_build, -1 if rival_seen is None else rival_seen)
    compared = indexes > cutoff
    x_cmp, y_cmp, b_cmp = features[compared], labels[compared], indexes[compared]
    matrix = FeatureMatrix(tests=("",) * len(y_cmp), values=x_cmp)
    candidate_scores = trained.evaluated.predict(trained.evaluated.inputs(matrix))
    if rival is not None:
        loaded = load_model(rival.model_text)
        bar_scores = loaded.predict(loaded.inputs(matrix))
        against = f"the active model v{rival.version}"
    else:
        bar_scores = heuristic_scores(matrix)
        against = "the heuristic"
        if incumbent is not None:
            against += f" (the active model v{incumbent.version} reads other features)"
    # Calibrated on every build held out from the candidate's fits.
    held = _calibration_rows(features, indexes > trained.validation.last_build)
    held_matrix = FeatureMatrix(tests=("",) * int(held.sum()), values=features[held])
    candidate_calibration = calibration.fit(
        trained.evaluated.predict(trained.evaluated.inputs(held_matrix)),
        labels[held],
        indexes[held],
    )
    heuristic_calibration = calibration.fit(
        heuristic_scores(held_matrix), labels[held], indexes[held]
    ) or _heuristic_calibration_on_every_build(features, labels, indexes)
    # Each build's tests in the order a plan serves them: equal scores (a
    # simple ordering's model gives a step of its order one score) as
    # scoring.ranks breaks the tie, not in the rows' order.
    tie = choice.plan_tie(x_cmp, FEATURE_NAMES, younger_first=tie_choice.younger_first)
    _, candidate_apfds = build_apfds(
        choice.served_order(candidate_scores, tie, b_cmp), y_cmp, b_cmp
    )
    _, bar_apfds = build_apfds(choice.served_order(bar_scores, tie, b_cmp), y_cmp, b_cmp)
    compared_builds = int(np.unique(b_cmp).size)
    # The active model keeps serving only while the heuristic is not ahead
    # of it on these builds (none of which it was trained on): otherwise it
    # is retired, and the heuristic is the bar the candidate must clear.
    retired_reason = None
    if rival is not None:
        _, heuristic_apfds = build_apfds(
            choice.served_order(heuristic_scores(matrix), tie, b_cmp), y_cmp, b_cmp
        )
        guard = paired.compare(heuristic_apfds - bar_apfds)
        if guard.verdict == paired.AHEAD:
            retired_reason = (
                f"the heuristic is ahead of the active model v{rival.version}: "
                f"{interval_phrase(guard.as_json())}"
            )
            bar_apfds = heuristic_apfds
            against = "the heuristic"
    comparison = paired.compare(candidate_apfds - bar_apfds)
    promoted = comparison.verdict == paired.AHEAD
    reason = _comparison_reason(against, comparison, compared_builds)
    if retired_reason is not None:
        reason += f"; {retired_reason}, so it is retired"

    def figures(scores: np.ndarray[Any, np.dtype[np.float64]]) -> dict[str, Any] | None:
        return asdict(validation_metrics(scores, y_cmp, b_cmp, tie)) if y_cmp.size else None

    # The simple orderings too, on the same builds, for the record.
    baselines = {name: figures(scores(matrix)) for name, scores in HEURISTICS.items()}
    best_baseline = max(baselines, key=lambda name: (baselines[name] or {}).get("mean_apfd") or 0.0)
    compared_span = (
        BuildSpan(
            first_build=int(b_cmp.min()),
            last_build=int(b_cmp.max()),
            builds=compared_builds,
            rows=int(y_cmp.size),
            failures=int(y_cmp.sum()),
        )
        if y_cmp.size
        else None
    )

    version = (
        session.scalar(
            select(func.max(RiskModel.version)).where(RiskModel.repository_id == repository_id)
        )
        or 0
    ) + 1
    importance = trained.booster.feature_importance(importance_type="gain")
    last = int(indexes.max())
    record = RiskModel(
        repository_id=repository_id,
        version=version,
        status=ModelStatus.CANDIDATE,
        model_text=trained.model_text,
        feature_names=list(trained.feature_names),
        params=dict(trained.params),
        metrics={
            "candidate": figures(candidate_scores),
            "active": figures(bar_scores) if rival is not None else None,
            "heuristic": baselines["riskrank heuristic"],
            "heuristics": baselines,
            "best_heuristic": best_baseline,
            "early_stopping": asdict(trained.metrics),
            "validation_builds": compared_builds,
            "best_iteration": trained.best_iteration,
            "importance": {
                name: round(float(value), 3)
                for name, value in zip(trained.feature_names, importance, strict=True)
            },
            "decision": reason,
            "selection_weights": {
                "explored_rows": explored,
                "cap": replay.MAX_SELECTION_WEIGHT,
                "max": round(float(weights.max()), 6) if explored else 1.0,
                "applied": bool(explored) and not scorer.ranking,
            },
            # What was trained, and why: the candidates on builds before the
            # held-out ones (scheduler.risk.choice).
            "scorer": {"name": scorer.name, "description": scorer.description},
            "choice": picked.as_json(),
            # How its plans, and the heuristic's until the next training,
            # order tests of equal score.
            "tie": tie_choice.as_json(),
            "comparison": comparison.as_json()
            | {
                "confidence": paired.CONFIDENCE,
                "resamples": paired.RESAMPLES,
                "seed": paired.SEED,
                "measure": "APFD",
                "against": "heuristic"
                if rival is None or retired_reason is not None
                else "active model",
                "active_retired": retired_reason,
                "against_version": None if rival is None else rival.version,
                "against_trained_through": None
                if rival_seen is None or rival_seen < 0
                else _point(builds, rival_seen),
            },
            "ranges": {
                "train": _range(builds, trained.train),
                "early_stopping": _range(builds, trained.validation),
                "held_out": _range(builds, trained.comparison),
                "compared": _range(builds, compared_span),
            },
            # The served model is refit on every build up to this one.
            "trained_through": _point(builds, last),
        },
        train_from=builds[trained.train.first_build].at,
        train_to=builds[last].at,
        train_rows=trained.rows,
        train_failures=trained.failures,
    )
    if candidate_calibration is not None:
        record.metrics["calibration"] = candidate_calibration.as_json()
    if heuristic_calibration is not None:
        record.metrics["heuristic_calibration"] = heuristic_calibration.as_json()
    session.add(record)
    session.flush()
    if promoted:
        _activate(session, record)
    elif rival is not None and retired_reason is not None:
        rival.status = ModelStatus.RETIRED
        log.warning("repository %s: model v%s retired (%s)", repository_id, rival.version, reason)
    elif rival is not None:
        _refresh_calibration(rival, bar_scores, y_cmp, b_cmp, x_cmp)
    log.info("repository %s: model v%s %s (%s)", repository_id, version, record.status, reason)
    return TrainingOutcome(
        record, promoted, reason, retired=not promoted and retired_reason is not None
    )


def repositories_due(session: Session, *, every_runs: int, every_hours: float) -> list[int]:
    """Repositories with `every_runs` reports ingested since their newest
    model (or since the start), or with any after `every_hours`."""
    newest = (
        select(RiskModel.repository_id, func.max(RiskModel.created_at).label("trained_at"))
        .group_by(RiskModel.repository_id)
        .subquery()
    )
    since = func.coalesce(newest.c.trained_at, datetime(1970, 1, 1, tzinfo=UTC))
    rows = session.execute(
        select(SuiteRun.repository_id, func.count(), newest.c.trained_at)
        .outerjoin(newest, newest.c.repository_id == SuiteRun.repository_id)
        .where(SuiteRun.status == RunStatus.INGESTED, SuiteRun.ingested_at > since)
        .group_by(SuiteRun.repository_id, newest.c.trained_at)
    )
    now = utcnow()
    due = []
    for repository_id, new_runs, trained_at in rows:
        stale = trained_at is None or now - trained_at >= timedelta(hours=every_hours)
        if new_runs >= every_runs or (stale and new_runs > 0 and trained_at is not None):
            due.append(repository_id)
    return sorted(due)


def _activate(session: Session, record: RiskModel) -> None:
    for other in session.scalars(
        select(RiskModel).where(
            RiskModel.repository_id == record.repository_id,
            RiskModel.status == ModelStatus.ACTIVE,
            RiskModel.id != record.id,
        )
    ):
        other.status = ModelStatus.RETIRED
    record.status = ModelStatus.ACTIVE
    record.promoted_at = utcnow()


def list_models(session: Session, *, repository_id: int) -> list[RiskModel]:
    return list(
        session.scalars(
            select(RiskModel)
            .where(RiskModel.repository_id == repository_id)
            .order_by(RiskModel.version.desc())
        )
    )


def get_model(session: Session, *, repository_id: int, version: int) -> RiskModel:
    record = session.scalar(
        select(RiskModel).where(
            RiskModel.repository_id == repository_id, RiskModel.version == version
        )
    )
    if record is None:
        raise RegistryError(f"there is no model version {version}")
    return record


def promote(session: Session, *, repository_id: int, version: int) -> RiskModel:
    """Make a version the active model, whatever its metrics (an operator's call)."""
    record = get_model(session, repository_id=repository_id, version=version)
    _activate(session, record)
    metrics.after_commit(session, metrics.PROMOTIONS.labels(by="operator"))
    return record


def rollback(session: Session, *, repository_id: int) -> RiskModel:
    """Back to the model that was active before the current one."""
    current = active_model(session, repository_id)
    if current is None:
        raise RegistryError("no model is active: nothing to roll back")
    previous = session.scalar(
        select(RiskModel)
        .where(
            RiskModel.repository_id == repository_id,
            RiskModel.status == ModelStatus.RETIRED,
            RiskModel.version < current.version,
        )
        .order_by(RiskModel.promoted_at.desc(), RiskModel.version.desc())
        .limit(1)
    )
    if previous is None:
        raise RegistryError(f"v{current.version} is the first model that was active")
    current.status = ModelStatus.RETIRED
    previous.status = ModelStatus.ACTIVE
    previous.promoted_at = utcnow()
    metrics.after_commit(session, metrics.ROLLBACKS)
    return previous


def summary(record: RiskModel) -> dict[str, Any]:
    candidate = (record.metrics or {}).get("candidate") or {}
    return {
        "version": record.version,
        "status": record.status.value,
        "created_at": record.created_at.isoformat(),
        "rows": record.train_rows,
        "failures": record.train_failures,
        "apfd": candidate.get("mean_apfd"),
        "recall_at_33": candidate.get("mean_recall_at_33"),
        "auc": candidate.get("auc"),
        "log_loss": candidate.get("log_loss"),
        "comparison": (record.metrics or {}).get("comparison"),
        "decision": (record.metrics or {}).get("decision"),
        "scorer": ((record.metrics or {}).get("scorer") or {}).get("name"),
        "calibration": calibration_summary((record.metrics or {}).get("calibration")),
        "heuristic_calibration": calibration_summary(
            (record.metrics or {}).get("heuristic_calibration")
        ),
    }


def calibration_summary(stored: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A stored calibration's method, expected calibration error and what
    it was learnt from (None: the record has none)."""
    if not isinstance(stored, Mapping):
        return None
    return {
        key: stored.get(key) for key in ("method", "ece", "log_loss", "rows", "failures", "builds")
    }
