"""Training a repository's model and keeping the registry: every trained
model is a row of risk_models; a candidate becomes the active model only if
it beats the active one (or, for a repository's first model, the heuristic)
on the same held-out builds."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler.models import ModelStatus, Repository, RiskModel, RunStatus, SuiteRun
from scheduler.models.base import utcnow
from scheduler.risk import replay
from scheduler.risk.features import FEATURE_NAMES, FeatureMatrix
from scheduler.risk.heuristic import HEURISTICS, heuristic_scores
from scheduler.risk.model import (
    ModelError,
    ValidationMetrics,
    load_model,
    train_model,
    validation_metrics,
)

log = logging.getLogger(__name__)


class TrainingError(Exception):
    """Training that could not happen (too little history, no failures…)."""


class RegistryError(Exception):
    """A registry command that cannot be carried out."""


@dataclass(frozen=True)
class TrainingOutcome:
    model: RiskModel
    promoted: bool
    reason: str


def _better(candidate: ValidationMetrics, incumbent: ValidationMetrics | None) -> bool:
    """Higher mean APFD on the validation builds; recall at 33% breaks a tie."""
    if incumbent is None or incumbent.mean_apfd is None:
        return candidate.mean_apfd is not None
    if candidate.mean_apfd is None:
        return False
    if candidate.mean_apfd != incumbent.mean_apfd:
        return candidate.mean_apfd > incumbent.mean_apfd
    return (candidate.mean_recall_at_33 or 0.0) > (incumbent.mean_recall_at_33 or 0.0)


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


def train_repository(session: Session, *, repository_id: int) -> TrainingOutcome | None:
    """Train on the whole history, replayed in time order; None when another
    training of the repository holds the lock."""
    if not _lock(session, repository_id):
        return None
    builds = replay.load_builds(session, repository_id=repository_id)
    features, labels, indexes = replay.training_rows(builds)
    if len(labels) == 0:
        raise TrainingError("no test outcomes yet: import a history or send results first")
    try:
        trained = train_model(features, labels, indexes, FEATURE_NAMES)
    except ModelError as error:
        raise TrainingError(str(error)) from error

    held_out = indexes >= trained.validation.first_build
    x_val, y_val, b_val = features[held_out], labels[held_out], indexes[held_out]
    validation = FeatureMatrix(tests=("",) * len(y_val), values=x_val)
    heuristic = validation_metrics(heuristic_scores(validation), y_val, b_val)
    # The simple orderings too, for the record (the bar to promote a first
    # model is the heuristic that serves until then).
    baselines = {
        name: validation_metrics(scores(validation), y_val, b_val)
        for name, scores in HEURISTICS.items()
    }
    best_baseline = max(baselines, key=lambda name: baselines[name].mean_apfd or 0.0)
    incumbent = active_model(session, repository_id)
    active_metrics: ValidationMetrics | None = None
    if incumbent is not None and set(incumbent.feature_names) <= set(FEATURE_NAMES):
        loaded = load_model(incumbent.model_text)
        active_metrics = validation_metrics(loaded.predict(loaded.inputs(validation)), y_val, b_val)
    bar = active_metrics if incumbent is not None else heuristic
    promoted = _better(trained.metrics, bar)
    if incumbent is not None and active_metrics is None:
        promoted, reason = True, "the active model reads other features"
    elif promoted:
        reason = "beats the " + ("active model" if incumbent is not None else "heuristic")
    else:
        reason = "does not beat the " + ("active model" if incumbent is not None else "heuristic")

    version = (
        session.scalar(
            select(func.max(RiskModel.version)).where(RiskModel.repository_id == repository_id)
        )
        or 0
    ) + 1
    importance = trained.booster.feature_importance(importance_type="gain")
    times = [build.at for build in builds]
    record = RiskModel(
        repository_id=repository_id,
        version=version,
        status=ModelStatus.CANDIDATE,
        model_text=trained.model_text,
        feature_names=list(trained.feature_names),
        params=dict(trained.params),
        metrics={
            "candidate": asdict(trained.metrics),
            "active": asdict(active_metrics) if active_metrics is not None else None,
            "heuristic": asdict(heuristic),
            "heuristics": {name: asdict(figures) for name, figures in baselines.items()},
            "best_heuristic": best_baseline,
            "validation_builds": trained.validation.builds,
            "best_iteration": trained.best_iteration,
            "importance": {
                name: round(float(value), 3)
                for name, value in zip(trained.feature_names, importance, strict=True)
            },
            "decision": reason,
        },
        train_from=_time(times, trained.train.first_build),
        train_to=_time(times, trained.validation.last_build),
        train_rows=trained.rows,
        train_failures=trained.failures,
    )
    session.add(record)
    session.flush()
    if promoted:
        _activate(session, record)
    log.info("repository %s: model v%s %s (%s)", repository_id, version, record.status, reason)
    return TrainingOutcome(record, promoted, reason)


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


def _time(times: list[datetime], index: int) -> datetime | None:
    return times[index] if 0 <= index < len(times) else None


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
    }
