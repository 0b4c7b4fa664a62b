"""What an operator asks first about riskrank and each repository: what
waits for a worker, when each repository last sent an event and results,
its active model and how good it is, when it was last trained.

Read-only; `riskrank status` and `riskrank repo show` print it. Every query
is an aggregate over indexed columns or small tables (repositories, models)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from scheduler.models import (
    ApiToken,
    CiEvent,
    Commit,
    EventStatus,
    KnownTest,
    KnownTestStats,
    ModelStatus,
    Plan,
    Repository,
    RiskModel,
    RunStatus,
    SuiteRun,
)
from scheduler.models.base import utcnow


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass(frozen=True)
class Waiting:
    """Rows of one kind stored and not yet done by a worker."""

    pending: int
    oldest_seconds: float | None  # None: nothing waits
    failed: int

    def as_json(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "oldest_seconds": self.oldest_seconds,
            "failed": self.failed,
        }


def _waiting(session: Session, model: Any, pending: Any, failed: Any, now: datetime) -> Waiting:
    count, oldest = session.execute(
        select(func.count(), func.min(model.received_at)).where(model.status == pending)
    ).one()
    failures = session.scalar(select(func.count()).where(model.status == failed)) or 0
    age = round((now - oldest).total_seconds(), 1) if oldest is not None else None
    return Waiting(pending=int(count), oldest_seconds=age, failed=int(failures))


def waiting(session: Session) -> dict[str, Waiting]:
    """CI events and test reports waiting for a worker, and those given up."""
    now = utcnow()
    return {
        "events": _waiting(session, CiEvent, EventStatus.PENDING, EventStatus.FAILED, now),
        "runs": _waiting(session, SuiteRun, RunStatus.PENDING, RunStatus.FAILED, now),
    }


@dataclass(frozen=True)
class RepositoryOverview:
    provider: str
    repository: str
    default_branch: str | None
    last_event: dict[str, Any] | None  # received_at, event, status
    last_results: dict[str, Any] | None  # received_at, status, tests
    active_model: dict[str, Any] | None  # version, promoted_at, apfd, auc, log_loss
    last_training: dict[str, Any] | None  # created_at, version, status
    counts: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "repository": self.repository,
            "default_branch": self.default_branch,
            "last_event": self.last_event,
            "last_results": self.last_results,
            "active_model": self.active_model,
            "last_training": self.last_training,
            "counts": self.counts,
        }


def _newest(session: Session, query: Any) -> Any:
    return session.execute(query.limit(1)).first()


def _quality(metrics: dict[str, Any] | None) -> dict[str, Any]:
    """The active model's figures on the held-out builds it was compared on."""
    candidate = (metrics or {}).get("candidate") or {}
    return {
        "apfd": candidate.get("mean_apfd"),
        "auc": candidate.get("auc"),
        "log_loss": candidate.get("log_loss"),
    }


def _count(session: Session, query: Any) -> int:
    return int(session.scalar(query) or 0)


def repository_overview(session: Session, repository: Repository) -> RepositoryOverview:
    """One repository: its newest event, results and training, its active
    model, and how much riskrank holds of it."""
    rid = repository.id
    event = _newest(
        session,
        select(CiEvent.received_at, CiEvent.event, CiEvent.status)
        .where(CiEvent.repository_id == rid)
        .order_by(CiEvent.received_at.desc(), CiEvent.id.desc()),
    )
    run = _newest(
        session,
        select(SuiteRun.received_at, SuiteRun.status, SuiteRun.ingested_tests)
        .where(SuiteRun.repository_id == rid)
        .order_by(SuiteRun.received_at.desc(), SuiteRun.id.desc()),
    )
    active = _newest(
        session,
        select(RiskModel.version, RiskModel.promoted_at, RiskModel.metrics).where(
            RiskModel.repository_id == rid, RiskModel.status == ModelStatus.ACTIVE
        ),
    )
    trained = _newest(
        session,
        select(RiskModel.created_at, RiskModel.version, RiskModel.status)
        .where(RiskModel.repository_id == rid)
        .order_by(RiskModel.created_at.desc(), RiskModel.version.desc()),
    )
    tests, flaky = session.execute(
        select(func.count(), func.sum(case((KnownTestStats.flaky_runs > 0, 1), else_=0)))
        .select_from(KnownTest)
        .outerjoin(KnownTestStats, KnownTestStats.test_id == KnownTest.id)
        .where(KnownTest.repository_id == rid, KnownTest.is_active.is_(True))
    ).one()
    counts = {
        "events": _count(
            session, select(func.count()).select_from(CiEvent).where(CiEvent.repository_id == rid)
        ),
        "commits": _count(
            session, select(func.count()).select_from(Commit).where(Commit.repository_id == rid)
        ),
        "runs": _count(
            session,
            select(func.count()).select_from(SuiteRun).where(SuiteRun.repository_id == rid),
        ),
        "plans": _count(
            session, select(func.count()).select_from(Plan).where(Plan.repository_id == rid)
        ),
        "models": _count(
            session,
            select(func.count()).select_from(RiskModel).where(RiskModel.repository_id == rid),
        ),
        "tokens": _count(
            session,
            select(func.count())
            .select_from(ApiToken)
            .where(ApiToken.repository_id == rid, ApiToken.revoked_at.is_(None)),
        ),
        "tests": int(tests or 0),
        "flaky_tests": int(flaky or 0),
        "builds": int(repository.build_count or 0),
    }
    return RepositoryOverview(
        provider=repository.provider.value,
        repository=repository.full_name,
        default_branch=repository.default_branch,
        last_event=None
        if event is None
        else {"received_at": _iso(event[0]), "event": event[1], "status": event[2].value},
        last_results=None
        if run is None
        else {"received_at": _iso(run[0]), "status": run[1].value, "tests": run[2]},
        active_model=None
        if active is None
        else {"version": active[0], "promoted_at": _iso(active[1]), **_quality(active[2])},
        last_training=None
        if trained is None
        else {"created_at": _iso(trained[0]), "version": trained[1], "status": trained[2].value},
        counts=counts,
    )


def all_repositories(session: Session) -> list[RepositoryOverview]:
    """Every registered repository's overview, by provider and name."""
    repositories = session.scalars(
        select(Repository).order_by(Repository.provider, Repository.slug)
    )
    return [repository_overview(session, repository) for repository in repositories]


@dataclass(frozen=True)
class FlakyTest:
    test: str
    flaky_runs: int  # runs where it failed and then passed on the same commit
    runs: int
    failures: int
    flips: int  # changes between pass and fail from one build to the next
    last_failure_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "flaky_runs": self.flaky_runs,
            "runs": self.runs,
            "failures": self.failures,
            "flips": self.flips,
            "last_failure_at": _iso(self.last_failure_at),
        }


def flaky_tests(session: Session, *, repository_id: int, limit: int) -> list[FlakyTest]:
    """The repository's active tests that failed and then passed on the same
    commit at least once, the most often flaky first."""
    rows = session.execute(
        select(
            KnownTest.name,
            KnownTestStats.flaky_runs,
            KnownTestStats.runs,
            KnownTestStats.failures,
            KnownTestStats.flips,
            KnownTestStats.last_failure_at,
        )
        .join(KnownTestStats, KnownTestStats.test_id == KnownTest.id)
        .where(
            KnownTest.repository_id == repository_id,
            KnownTest.is_active.is_(True),
            KnownTestStats.flaky_runs > 0,
        )
        .order_by(KnownTestStats.flaky_runs.desc(), KnownTest.name)
        .limit(max(0, limit))
    )
    return [FlakyTest(*row) for row in rows]


def newest_planned_commit(session: Session, repository_id: int) -> str | None:
    """The sha of the repository's most recently planned commit."""
    return session.scalar(
        select(Commit.sha)
        .join(Plan, Plan.commit_id == Commit.id)
        .where(Plan.repository_id == repository_id)
        .order_by(Plan.created_at.desc(), Plan.id.desc())
        .limit(1)
    )
