"""Calibration refreshed as outcomes arrive, between trainings.

Every REFRESH_EVERY evaluated plans of a repository, the map that makes the
serving scorer's scores probabilities is fit again (scheduler.risk.calibration,
isotonic or Platt as the held-out builds choose) on the newest REFRESH_PLANS
evaluated plans it scored: every plan after the model's training is a build
it was not trained on. Cheap: no history replay and no training; a plan
keeps each test's feature vector (PlanItem.features), so the raw score is
the scorer's prediction on those rows, and the label the test's outcome in
the plan's runs.

Only the tests that ran have an outcome, and which ran is what the policy
chose: the selected ones stand for themselves, and each test of the
exploration sample, run with probability p, stands for 1/p tests over the
budget (its row counted round(1/p) times), so the map learns from the whole
suite, not from the riskiest part of it alone. Tests new to riskrank are
left out (their probability is the repository's failure rate of new tests,
whatever their score), as training leaves them out.

What it replaces: the active model's `calibration` (or, scoring with the
heuristic, the newest training's `heuristic_calibration`), with
`calibration_refreshed_at` and `calibration_refreshed_from` set; plans
scored from then on carry the new probabilities. A refit that cannot be
made (too few builds, no failure) leaves the map as it is."""

from __future__ import annotations

import logging
from typing import Any, Final

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler.models import ModelStatus, Plan, PlanItem, RiskModel
from scheduler.models.base import utcnow
from scheduler.risk import calibration
from scheduler.risk.features import FEATURE_NAMES, FeatureMatrix
from scheduler.risk.heuristic import heuristic_scores
from scheduler.risk.serving import load_model

log = logging.getLogger(__name__)

REFRESH_EVERY: Final = 20  # evaluated plans between refreshes
REFRESH_PLANS: Final = 100  # the newest evaluated plans a refresh learns from
MAX_WEIGHT: Final = 100  # a row of the exploration sample counts at most this often


def due(session: Session, repository_id: int, every: int = REFRESH_EVERY) -> bool:
    """Whether the repository's evaluated plans just reached a multiple of `every`."""
    evaluated = session.scalar(
        select(func.count(Plan.id)).where(
            Plan.repository_id == repository_id, Plan.evaluation.is_not(None)
        )
    )
    return evaluated is not None and evaluated > 0 and evaluated % every == 0


def rows_of(
    session: Session, plan_id: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(features, failed, weight) of the plan's tests that ran."""
    from scheduler.services.plan_evaluation import every_dropped_ran, outcomes_of, planned_tests

    observed = outcomes_of(session, plan_id)
    if not observed:
        return np.empty((0, len(FEATURE_NAMES)), np.float32), np.empty(0), np.empty(0)
    items = planned_tests(session, plan_id)
    planned = {item.test_id: item for item in items}
    expanded = every_dropped_ran(items, observed)
    vectors, failed, weight = [], [], []
    for test_id, blob in session.execute(
        select(PlanItem.test_id, PlanItem.features).where(
            PlanItem.plan_id == plan_id, PlanItem.test_id.in_(list(observed))
        )
    ):
        vector = np.frombuffer(bytes(blob), dtype="<f4")
        if vector.size != len(FEATURE_NAMES):
            continue
        item = planned.get(test_id)
        vectors.append(vector)
        failed.append(1.0 if observed[test_id].failed else 0.0)
        if item is None or expanded:
            weight.append(1)
        else:
            weight.append(weight_of(item.explored, item.propensity))
    if not vectors:
        return np.empty((0, len(FEATURE_NAMES)), np.float32), np.empty(0), np.empty(0)
    return np.vstack(vectors), np.array(failed), np.array(weight)


def refresh(
    session: Session, repository_id: int, *, plans: int = REFRESH_PLANS
) -> calibration.Calibration | None:
    """Fit the serving scorer's map again on its newest evaluated plans
    (see the module's docstring); the new map, or None when none was made."""
    record: RiskModel | None
    active = session.scalar(
        select(RiskModel).where(
            RiskModel.repository_id == repository_id, RiskModel.status == ModelStatus.ACTIVE
        )
    )
    if active is not None:
        record, key = active, "calibration"
        model = load_model(active.model_text)

        def scores(matrix: FeatureMatrix) -> np.ndarray[Any, Any]:
            return model.predict(model.inputs(matrix))

        scored_by = Plan.model_id == active.id
    else:
        record = session.scalar(
            select(RiskModel)
            .where(RiskModel.repository_id == repository_id)
            .order_by(RiskModel.version.desc())
            .limit(1)
        )
        if record is None:
            return None  # nowhere to keep a map before the first training
        key, scores, scored_by = "heuristic_calibration", heuristic_scores, Plan.model_id.is_(None)
    newest = session.execute(
        select(Plan.id, Plan.feature_names)
        .where(Plan.repository_id == repository_id, Plan.evaluation.is_not(None), scored_by)
        .order_by(Plan.id.desc())
        .limit(plans)
    )
    # A plan scored with other features (another riskrank) cannot be scored again.
    plan_ids = [plan_id for plan_id, names in newest if list(names or ()) == list(FEATURE_NAMES)]
    parts = []
    for build, plan_id in enumerate(sorted(plan_ids)):
        features, failed, weight = rows_of(session, plan_id)
        parts.append((features, failed, weight, np.full(len(failed), build)))
    if not parts:
        return None
    features = np.vstack([p[0] for p in parts])
    failed = np.concatenate([p[1] for p in parts])
    weight = np.concatenate([p[2] for p in parts]).astype(np.int64)
    builds = np.concatenate([p[3] for p in parts])
    known = np.nan_to_num(features[:, FEATURE_NAMES.index("is_new")], nan=0.0) != 1.0
    features, failed, weight, builds = features[known], failed[known], weight[known], builds[known]
    if failed.size == 0:
        return None
    raw = scores(FeatureMatrix(tests=("",) * len(failed), values=features))
    refit = refit_rows(raw, failed, weight, builds)
    if refit is not None:
        keep(record, key, refit, plans=len(plan_ids))
        session.flush()
    return refit


def refit_rows(
    raw: np.ndarray[Any, Any],
    failed: np.ndarray[Any, Any],
    weight: np.ndarray[Any, Any],
    builds: np.ndarray[Any, Any],
) -> calibration.Calibration | None:
    """The map from rows of (raw score, failed, how many times the row
    counts, build): each row repeated `weight` times (pure)."""
    times = np.asarray(weight, dtype=np.int64)
    return calibration.fit(
        np.repeat(raw, times), np.repeat(failed, times), np.repeat(builds, times)
    )


def keep(record: RiskModel, key: str, refit: calibration.Calibration, *, plans: int) -> None:
    """The refit map in place of the record's `key` map."""
    record.metrics = {
        **(record.metrics or {}),
        key: refit.as_json(),
        "calibration_refreshed_at": utcnow().isoformat(),
        "calibration_refreshed_from": f"the outcomes of {plans} plans",
    }


def weight_of(explored: bool, propensity: float | None) -> int:
    """How many times a row counts: 1/p for the exploration sample, else once."""
    if explored and propensity:
        return int(min(float(MAX_WEIGHT), round(1.0 / propensity)))
    return 1


def after_evaluation(session: Session, repository_id: int) -> None:
    """Refresh when due, in a savepoint: a refit that fails is logged and
    never costs the evaluation."""
    if not due(session, repository_id):
        return
    try:
        with session.begin_nested():
            refresh(session, repository_id)
    except Exception:
        log.exception("could not refresh the calibration of repository %s", repository_id)


def store(
    session: Session, repository_id: int, refit: calibration.Calibration, *, plans: int
) -> bool:
    """Keep a refit map for the serving scorer (a backtest's closed loop
    refits from memory): the active model's, else the newest training's
    heuristic map; False when there is no model record to keep it in."""
    active = session.scalar(
        select(RiskModel).where(
            RiskModel.repository_id == repository_id, RiskModel.status == ModelStatus.ACTIVE
        )
    )
    if active is not None:
        keep(active, "calibration", refit, plans=plans)
        return True
    newest = session.scalar(
        select(RiskModel)
        .where(RiskModel.repository_id == repository_id)
        .order_by(RiskModel.version.desc())
        .limit(1)
    )
    if newest is None:
        return False
    keep(newest, "heuristic_calibration", refit, plans=plans)
    return True
