"""Finding a commit's plan: the newest served one, scored on the spot when
there is none (after waiting for the worker when it may be on its way),
and again when it is stale."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.models import Commit, ModelStatus, Plan, PlanStatus, Repository, RiskModel
from scheduler.models.base import utcnow
from scheduler.services import scoring
from scheduler.services.plans.params import RepositoryRef
from scheduler.services.runs import ensure_commit

log = logging.getLogger(__name__)

# A known commit older than this has no scoring on its way: score it at once.
WAIT_WINDOW = timedelta(minutes=10)
POLL_SECONDS = 0.1
SERVED = (PlanStatus.READY, PlanStatus.HEURISTIC)


@dataclass(frozen=True)
class Found:
    commit_id: int
    commit_created_at: datetime
    branch: str | None
    plan_id: int | None
    status: PlanStatus | None
    model_version: int | None
    policy: dict[str, Any] | None
    scored_at: datetime | None = None
    model_id: int | None = None  # the plan's (None: the heuristic's)
    active_model_id: int | None = None  # the repository's active model now
    has_payload: bool = True
    # The statistics version the plan's payload is as of, and the repository's now.
    stats_version: int | None = None
    current_stats_version: int = 0
    # Why the commit's changed files may be incomplete (Commit.changes_note).
    changes_note: str | None = None

    @property
    def stale(self) -> bool:
        """Scored before plans had a payload (before this riskrank), or by
        another model than the active one (or by the heuristic while a
        model is active) and not yet followed by any CI run: no policy has
        been applied to it."""
        if self.plan_id is None:
            return False
        if not self.has_payload:
            return True
        return self.model_id != self.active_model_id and self.policy is None


def find(
    session: Session, *, repository_id: int, sha: str, plan_id: int | None = None
) -> Found | None:
    """The commit and its newest served plan, or the plan `plan_id` (plan
    fields None when unscored)."""
    newest = (
        select(Plan.id)
        .where(Plan.commit_id == Commit.id, Plan.status.in_(SERVED))
        .order_by(Plan.id.desc())
        .limit(1)
        .correlate(Commit)
        .scalar_subquery()
    )
    active = (
        select(RiskModel.id)
        .where(
            RiskModel.repository_id == Commit.repository_id,
            RiskModel.status == ModelStatus.ACTIVE,
        )
        .order_by(RiskModel.version.desc())
        .limit(1)
        .correlate(Commit)
        .scalar_subquery()
    )
    row = session.execute(
        select(
            Commit.id,
            Commit.created_at,
            Commit.branch,
            Plan.id,
            Plan.status,
            RiskModel.version,
            Plan.policy,
            Plan.scored_at,
            Plan.model_id,
            active,
            Plan.payload.is_not(None),
            Plan.stats_version,
            Repository.stats_version,
            Commit.changes_note,
        )
        .select_from(Commit)
        .join(Repository, Repository.id == Commit.repository_id)
        .outerjoin(Plan, Plan.id == (newest if plan_id is None else plan_id))
        .outerjoin(RiskModel, RiskModel.id == Plan.model_id)
        .where(Commit.repository_id == repository_id, Commit.sha == sha)
    ).first()
    if row is None:
        return None
    return Found(*row)


def _wait_for_scores(
    session: Session, *, repository_id: int, sha: str, seconds: float
) -> Found | None:
    """Poll for the worker's plan, each look in a transaction of its own (on
    SQLite an open transaction would hold the write lock the worker needs)."""
    deadline = time.monotonic() + seconds
    session.commit()
    while True:
        found = find(session, repository_id=repository_id, sha=sha)
        session.commit()  # never sleep inside a transaction
        if found is not None and found.plan_id is not None:
            return found
        if time.monotonic() >= deadline:
            return found
        time.sleep(POLL_SECONDS)


def scored(
    session: Session,
    *,
    repository: RepositoryRef,
    sha: str,
    branch: str | None,
    wait_seconds: float,
) -> Found:
    """The commit's newest plan, scoring it (after waiting for the worker,
    when one may be on its way) when there is none, and again when it is
    stale (see `rescored`)."""
    found = find(session, repository_id=repository.id, sha=sha)
    if found is not None and found.plan_id is not None:
        if found.stale:
            return rescored(session, found, repository_id=repository.id, sha=sha)
        return found
    if found is None:
        commit_id = ensure_commit(
            session,
            repository=session.get_one(Repository, repository.id),
            sha=sha,
            branch=branch,
        )
        log.info("plan for unknown commit %s: recorded and scored inline", sha)
    else:
        commit_id = found.commit_id
        if wait_seconds > 0 and utcnow() - found.commit_created_at < WAIT_WINDOW:
            waited = _wait_for_scores(
                session, repository_id=repository.id, sha=sha, seconds=wait_seconds
            )
            if waited is not None and waited.plan_id is not None:
                return waited
        log.info("plan for commit %s: not scored, scoring inline", sha)
    scoring.score_commit(session, commit_id)
    session.flush()
    result = find(session, repository_id=repository.id, sha=sha)
    if result is None or result.plan_id is None:
        raise RuntimeError(f"scoring commit {sha} stored no plan")
    return result


def rescored(session: Session, found: Found, *, repository_id: int, sha: str) -> Found:
    """The commit scored by the active model, when its stored plan came
    from an older model (or the heuristic) and no CI has followed it yet,
    or has no payload. A plan CI has followed is otherwise kept: the other
    shards and the retries of that build must get the same plan. If
    scoring fails, the stored plan."""
    try:
        with session.begin_nested():
            plan = scoring.score_commit(session, found.commit_id)
            session.flush()
    except Exception:
        log.exception("rescoring commit %s with the active model failed: serving its plan", sha)
        return found
    if plan is None:
        return found
    log.info("plan for commit %s: plan %s was stale, now plan %s", sha, found.plan_id, plan.id)
    result = find(session, repository_id=repository_id, sha=sha, plan_id=plan.id)
    return result if result is not None and result.plan_id is not None else found
