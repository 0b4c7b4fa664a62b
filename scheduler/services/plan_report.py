"""A commit's plan as people (and scripts) read it: what was scored, what the
policy last applied kept and why, and how it did once outcomes came in.
Read-only; `riskrank plan-log show` prints it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler import commit_ids
from scheduler.errors import ClientError
from scheduler.models import Commit, KnownTest, Plan, PlanItem, Repository, RiskModel
from scheduler.services.plan_evaluation import decision_of


class PlanNotFound(ClientError):
    """No such commit, or no plan for it yet."""

    status_code = 404


@dataclass(frozen=True)
class ItemView:
    rank: int
    test: str
    probability: float
    selected: bool | None
    propensity: float | None
    rule: str | None
    reason: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "test": self.test,
            "probability": self.probability,
            "selected": self.selected,
            "propensity": self.propensity,
            "rule": self.rule,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class PlanView:
    plan_id: int
    repository: str
    commit: str
    branch: str | None
    status: str
    model_version: int | None
    created_at: datetime
    scored_at: datetime | None
    policy: dict[str, Any] | None
    total: int  # items in the plan
    selected: int | None  # None: no policy applied yet
    items: list[ItemView]  # the first `limit` by rank
    evaluation: dict[str, Any] | None
    # The repository's live estimate of what trimming misses (Repository.trimming).
    trimming: dict[str, Any] | None = None
    # Why the commit's changed files may be incomplete (Commit.changes_note).
    changes_note: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "repository": self.repository,
            "commit": self.commit,
            "branch": self.branch,
            "status": self.status,
            "model_version": self.model_version,
            "created_at": self.created_at.isoformat(),
            "scored_at": self.scored_at.isoformat() if self.scored_at else None,
            "policy": self.policy,
            "total": self.total,
            "selected": self.selected,
            "items": [item.as_json() for item in self.items],
            "evaluation": self.evaluation,
            "trimming": self.trimming,
            "changes_note": self.changes_note,
        }


def find_commit(session: Session, repository: Repository, sha: str) -> Commit:
    """The commit a full id or an unambiguous prefix of a known one names
    (commit_ids.resolve, which raises CommitIdError for anything else)."""
    full = commit_ids.resolve(session, repository, sha)
    commit = session.scalar(
        select(Commit).where(Commit.repository_id == repository.id, Commit.sha == full)
    )
    if commit is None:
        raise PlanNotFound(f"riskrank knows no commit {full} of {repository.full_name}")
    return commit


def newest_plan(session: Session, repository: Repository, sha: str, *, limit: int) -> PlanView:
    """The commit's newest plan with its `limit` riskiest items."""
    commit = find_commit(session, repository, sha)
    plan = session.scalar(
        select(Plan)
        .where(Plan.commit_id == commit.id)
        .order_by(Plan.created_at.desc(), Plan.id.desc())
        .limit(1)
    )
    if plan is None:
        raise PlanNotFound(
            f"commit {commit.sha} of {repository.full_name} has no plan yet "
            "(a worker scores a commit after its push, the plan API on request)"
        )
    version = (
        session.scalar(select(RiskModel.version).where(RiskModel.id == plan.model_id))
        if plan.model_id is not None
        else None
    )
    record = decision_of(session, plan.id)
    total = session.scalar(select(func.count(PlanItem.id)).where(PlanItem.plan_id == plan.id))
    rows = session.execute(
        select(PlanItem.rank, KnownTest.name, PlanItem.probability, PlanItem.reason)
        .join(KnownTest, KnownTest.id == PlanItem.test_id)
        .where(PlanItem.plan_id == plan.id)
        .order_by(PlanItem.rank, PlanItem.id)
        .limit(max(0, limit))
    )
    items = []
    for rank, name, probability, reason in rows:
        row = rank - 1  # the decision is in stored rank order
        if record is None or not 0 <= row < len(record):
            items.append(ItemView(rank, name, probability, None, None, None, reason))
            continue
        selected, propensity = record.selected_at(row), record.propensity_at(row)
        items.append(
            ItemView(rank, name, probability, selected, propensity, record.rule[row], reason)
        )
    return PlanView(
        plan_id=plan.id,
        repository=repository.full_name,
        commit=commit.sha,
        branch=commit.branch,
        status=plan.status.value,
        model_version=version,
        created_at=plan.created_at,
        scored_at=plan.scored_at,
        policy=plan.policy,
        total=int(total or 0),
        selected=int((record.selected == 1).sum()) if record is not None else None,
        items=items,
        evaluation=plan.evaluation,
        trimming=repository.trimming,
        changes_note=commit.changes_note,
    )
