"""The figures /metrics reads from the database when scraped: what waits
for a worker, the tests and flaky tests of each repository, its active
model and that model's quality, and when it was last trained.

They are state, not events: the database holds them whichever process did
the work, so the api reads them (scheduler.metrics.DatabaseFigures caches
them a few seconds) rather than each process counting. Every query is an
aggregate over an indexed or small set (pending rows, models, repositories),
save the tests and flaky tests, one pass over the active tests' statistics;
on PostgreSQL the reads give up after STATEMENT_TIMEOUT_MS.

The trimming figures (the live estimate of the share of failures trimming
lets through, its interval, the ceiling it is held to, whether trimming is
escalated, and why; the calibration error of what the newest plans served
and its ceiling) are read from the repository's row, where plan evaluation
keeps them (scheduler.services.trimming); the model's calibration error is
the one stored with the active model's calibration, or, scoring with the
heuristic, with the heuristic's calibration of the newest training.

Not here: anything per commit or per test (unbounded labels)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select, text
from sqlalchemy.orm import Session

from scheduler.metrics import Figure
from scheduler.models import (
    CiEvent,
    EventStatus,
    KnownTest,
    KnownTestStats,
    ModelStatus,
    Repository,
    RiskModel,
    RunStatus,
    SuiteRun,
)
from scheduler.models.base import utcnow

STATEMENT_TIMEOUT_MS = 2000
REPOSITORY = ("repository",)
# Why trimming escalated (scheduler.services.trimming's `escalated_by`).
CAUSES = ("miss_rate", "calibration")


def _waiting(session: Session, model: Any, pending: Any, now: datetime) -> tuple[int, float]:
    """How many rows of `model` are pending, and the age of the oldest."""
    count, oldest = session.execute(
        select(func.count(), func.min(model.received_at)).where(model.status == pending)
    ).one()
    return int(count), (now - oldest).total_seconds() if oldest is not None else 0.0


def _queues(session: Session, now: datetime) -> list[Figure]:
    events, events_age = _waiting(session, CiEvent, EventStatus.PENDING, now)
    runs, runs_age = _waiting(session, SuiteRun, RunStatus.PENDING, now)
    events_failed = session.scalar(select(func.count()).where(CiEvent.status == EventStatus.FAILED))
    runs_failed = session.scalar(select(func.count()).where(SuiteRun.status == RunStatus.FAILED))
    figures = [
        Figure("riskrank_events_waiting", "CI events stored and not yet handled by a worker."),
        Figure(
            "riskrank_events_oldest_waiting_seconds",
            "Age of the oldest CI event waiting for a worker (0: none waits).",
        ),
        Figure("riskrank_events_failed", "CI events a worker gave up on (kept, with the error)."),
        Figure("riskrank_runs_waiting", "Test reports stored and not yet ingested."),
        Figure(
            "riskrank_runs_oldest_waiting_seconds",
            "Age of the oldest test report waiting for ingestion (0: none waits).",
        ),
        Figure("riskrank_runs_failed", "Test reports whose ingestion was given up."),
    ]
    for figure, value in zip(
        figures,
        (events, events_age, events_failed or 0, runs, runs_age, runs_failed or 0),
        strict=True,
    ):
        figure.add(value)
    return figures


def _tests(session: Session, slugs: dict[int, str]) -> list[Figure]:
    tests = Figure("riskrank_tests", "Active tests riskrank knows, by repository.", REPOSITORY)
    flaky = Figure(
        "riskrank_flaky_tests",
        "Active tests that failed and then passed on the same commit at least once.",
        REPOSITORY,
    )
    rows = session.execute(
        select(
            KnownTest.repository_id,
            func.count(),
            func.sum(case((KnownTestStats.flaky_runs > 0, 1), else_=0)),
        )
        .outerjoin(KnownTestStats, KnownTestStats.test_id == KnownTest.id)
        .where(KnownTest.is_active.is_(True))
        .group_by(KnownTest.repository_id)
    )
    counted = {repository_id: (count, flaky_count) for repository_id, count, flaky_count in rows}
    for repository_id, slug in slugs.items():
        count, flaky_count = counted.get(repository_id, (0, 0))
        tests.add(count, repository=slug)
        flaky.add(flaky_count or 0, repository=slug)
    return [tests, flaky]


def _models(session: Session, slugs: dict[int, str]) -> list[Figure]:
    version = Figure(
        "riskrank_model_active_version",
        "The active model's version by repository (0: none yet, plans are heuristic).",
        REPOSITORY,
    )
    quality = {
        "mean_apfd": Figure(
            "riskrank_model_validation_apfd",
            "The active model's mean APFD on the held-out builds it was compared on.",
            REPOSITORY,
        ),
        "auc": Figure(
            "riskrank_model_validation_auc",
            "The active model's ROC AUC on the held-out builds it was compared on.",
            REPOSITORY,
        ),
        "log_loss": Figure(
            "riskrank_model_validation_log_loss",
            "The active model's log loss on the held-out builds (lower is better calibrated).",
            REPOSITORY,
        ),
    }
    trained = Figure(
        "riskrank_model_last_training_timestamp_seconds",
        "When the repository's newest model was trained (Unix time); absent: never.",
        REPOSITORY,
    )
    promoted = Figure(
        "riskrank_model_promoted_timestamp_seconds",
        "When the active model became active (Unix time).",
        REPOSITORY,
    )
    calibration_error = Figure(
        "riskrank_model_calibration_error",
        "Expected calibration error of the probabilities plans carry (the active model's "
        "calibration, or the heuristic's), on held-out builds the map did not see.",
        REPOSITORY,
    )
    models = Figure(
        "riskrank_models",
        "Models in the registry by repository and status.",
        (*REPOSITORY, "status"),
    )
    active = {
        repository_id: (number, figures, promoted_at)
        for repository_id, number, figures, promoted_at in session.execute(
            select(
                RiskModel.repository_id,
                RiskModel.version,
                RiskModel.metrics,
                RiskModel.promoted_at,
            ).where(RiskModel.status == ModelStatus.ACTIVE)
        )
    }
    newest = dict(
        session.execute(
            select(RiskModel.repository_id, func.max(RiskModel.created_at)).group_by(
                RiskModel.repository_id
            )
        ).all()
    )
    by_status = session.execute(
        select(RiskModel.repository_id, RiskModel.status, func.count()).group_by(
            RiskModel.repository_id, RiskModel.status
        )
    )
    for repository_id, status, count in by_status:
        if repository_id in slugs:
            models.add(count, repository=slugs[repository_id], status=status.value)
    newest_metrics = _newest_metrics(session)
    for repository_id, slug in slugs.items():
        number, figures, promoted_at = active.get(repository_id, (0, None, None))
        version.add(number, repository=slug)
        if figures is not None:
            stored = figures.get("calibration") or {}
        else:
            stored = (newest_metrics.get(repository_id) or {}).get("heuristic_calibration") or {}
        ece = stored.get("ece")
        if isinstance(ece, int | float):
            calibration_error.add(ece, repository=slug)
        candidate = (figures or {}).get("candidate") or {}
        for key, figure in quality.items():
            value = candidate.get(key)
            if isinstance(value, int | float):
                figure.add(value, repository=slug)
        if promoted_at is not None:
            promoted.add(promoted_at.timestamp(), repository=slug)
        if newest.get(repository_id) is not None:
            trained.add(newest[repository_id].timestamp(), repository=slug)
    return [version, *quality.values(), calibration_error, trained, promoted, models]


def _newest_metrics(session: Session) -> dict[int, Any]:
    """Each repository's newest model's metrics (the heuristic's calibration)."""
    newest = (
        select(RiskModel.repository_id, func.max(RiskModel.version).label("version"))
        .group_by(RiskModel.repository_id)
        .subquery()
    )
    rows = session.execute(
        select(RiskModel.repository_id, RiskModel.metrics).join(
            newest,
            (newest.c.repository_id == RiskModel.repository_id)
            & (newest.c.version == RiskModel.version),
        )
    )
    return {repository_id: figures for repository_id, figures in rows}


def _trimming(session: Session, slugs: dict[int, str]) -> list[Figure]:
    estimate = Figure(
        "riskrank_trimming_miss_rate",
        "Estimated share of the failures trimming let through over the newest evaluated "
        "plans (from the exploration sample, inverse-propensity weighted).",
        REPOSITORY,
    )
    low = Figure(
        "riskrank_trimming_miss_rate_low",
        "Lower bound of the 95% interval of riskrank_trimming_miss_rate.",
        REPOSITORY,
    )
    high = Figure(
        "riskrank_trimming_miss_rate_high",
        "Upper bound of the 95% interval of riskrank_trimming_miss_rate.",
        REPOSITORY,
    )
    ceiling = Figure(
        "riskrank_trimming_miss_ceiling",
        "The share of failures the mode promises to let through at most.",
        REPOSITORY,
    )
    builds = Figure(
        "riskrank_trimming_window_builds", "Evaluated plans the estimate is over.", REPOSITORY
    )
    escalated = Figure(
        "riskrank_trimming_escalated",
        "1 while trimming is escalated (every test over the budget runs), else 0.",
        REPOSITORY,
    )
    escalated_by = Figure(
        "riskrank_trimming_escalated_by",
        "1 while trimming is escalated for this cause (miss_rate: the estimate's lower bound "
        "is above the miss ceiling; calibration: the lower bound of the calibration error of "
        "what plans served is above its ceiling), else 0.",
        (*REPOSITORY, "cause"),
    )
    calibration_error = Figure(
        "riskrank_trimming_calibration_error",
        "Expected calibration error of the probabilities plans served, measured on their "
        "outcomes over the newest evaluated plans of the serving scorer.",
        REPOSITORY,
    )
    calibration_error_low = Figure(
        "riskrank_trimming_calibration_error_low",
        "Lower bound of the 95% interval of riskrank_trimming_calibration_error, resampling "
        "its plans (a build's tests fail together): trimming escalates when it is above "
        "the ceiling.",
        REPOSITORY,
    )
    calibration_builds = Figure(
        "riskrank_trimming_calibration_builds",
        "Evaluated plans riskrank_trimming_calibration_error is over.",
        REPOSITORY,
    )
    calibration_ceiling = Figure(
        "riskrank_trimming_calibration_ceiling",
        "The calibration error above which trimming escalates.",
        REPOSITORY,
    )
    expansion_share = Figure(
        "riskrank_trimming_expansion_share",
        "The share of the tests plans dropped that ran anyway because their build expanded "
        "(enough tests that had passed failed), over the newest evaluated plans; paid out "
        "of the budget of the plans that follow.",
        REPOSITORY,
    )
    expanded_builds = Figure(
        "riskrank_trimming_expanded_builds",
        "Evaluated plans, of the newest, whose every dropped test ran.",
        REPOSITORY,
    )
    confidence_scale = Figure(
        "riskrank_trimming_confidence_scale",
        "confidence mode: how many times its 1 - t each plan may let through, so that the "
        "newest evaluated plans keep t of their expected failures (1: as the target says).",
        REPOSITORY,
    )
    states: dict[int, Any] = dict(session.execute(select(Repository.id, Repository.trimming)).all())
    for repository_id, slug in slugs.items():
        state = states.get(repository_id) or {}
        for figure, key in (
            (estimate, "miss_rate"),
            (low, "miss_rate_low"),
            (high, "miss_rate_high"),
            (ceiling, "ceiling"),
            (builds, "builds"),
            (calibration_error, "calibration_error"),
            (calibration_error_low, "calibration_error_low"),
            (calibration_builds, "calibration_builds"),
            (calibration_ceiling, "calibration_ceiling"),
            (expansion_share, "expansion_share"),
            (expanded_builds, "expanded_builds"),
            (confidence_scale, "confidence_scale"),
        ):
            value = state.get(key)
            if isinstance(value, int | float):
                figure.add(value, repository=slug)
        escalated.add(1 if state.get("escalation") else 0, repository=slug)
        causes = state.get("escalated_by")
        if not isinstance(causes, list):  # kept before the causes were
            causes = ["miss_rate"] if state.get("escalation") else []
        for cause in CAUSES:
            escalated_by.add(1 if cause in causes else 0, repository=slug, cause=cause)
    return [
        estimate,
        low,
        high,
        ceiling,
        builds,
        escalated,
        escalated_by,
        calibration_error,
        calibration_error_low,
        calibration_builds,
        calibration_ceiling,
        expansion_share,
        expanded_builds,
        confidence_scale,
    ]


def read_figures(session: Session) -> list[Figure]:
    """Every figure, as of now."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
    now = utcnow()
    slugs = dict(session.execute(select(Repository.id, Repository.slug)).all())
    repositories = Figure("riskrank_repositories", "Repositories riskrank watches.")
    repositories.add(len(slugs))
    return [
        repositories,
        *_queues(session, now),
        *_tests(session, slugs),
        *_models(session, slugs),
        *_trimming(session, slugs),
    ]
