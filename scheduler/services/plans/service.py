"""Serving a plan: the policy applied to a commit's plan, answered as JSON.

Serving a stored plan is a handful of queries: the commit with its newest
plan and the repository's statistics version (one query), the plan's
payload (one row, once per process), the change's paths and, on the
default branch, how many of its builds came before. The statistics are read
only when outcomes arrived since scoring. What the policy decided is
recorded on the plan (one row) only when the applied policy differs from
the one recorded, so the shards of one build write it once."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from scheduler.db import Database
from scheduler.models import ChangedFile, Commit, Plan, PlanStatus, SuiteRun
from scheduler.planning import policy as policies
from scheduler.planning.policy import Context, Decision, Policy, Shard
from scheduler.services.plans.answer import (
    NO_TESTS,
    NO_TESTS_MESSAGE,
    Answer,
    head,
    joined,
    pieces,
    run_all,
)
from scheduler.services.plans.cache import Lru, database_key
from scheduler.services.plans.decision import PendingDecision, applied_policy
from scheduler.services.plans.fallback import fallback
from scheduler.services.plans.items import Covered, Items, cover, load_items
from scheduler.services.plans.lookup import Found, rescored, scored
from scheduler.services.plans.params import (
    PlanDefaults,
    PlanRequest,
    RepositoryRef,
    policy_of,
)

log = logging.getLogger(__name__)


def default_branch_build(
    session: Session, *, repository_id: int, commit_id: int, branch: str
) -> int:
    """This commit's build number on the default branch: 1 + the earlier
    commits of the branch that CI built (a run reported, or a plan asked)."""
    built = or_(
        select(SuiteRun.id).where(SuiteRun.commit_id == Commit.id).exists(),
        select(Plan.id).where(Plan.commit_id == Commit.id).exists(),
    )
    earlier = session.scalar(
        select(func.count(Commit.id)).where(
            Commit.repository_id == repository_id,
            Commit.branch == branch,
            Commit.id < commit_id,
            built,
        )
    )
    return int(earlier or 0) + 1


def context_of(
    session: Session, found: Found, repository: RepositoryRef, branch: str | None
) -> Context:
    paths = list(
        session.scalars(select(ChangedFile.path).where(ChangedFile.commit_id == found.commit_id))
    )
    on = found.branch or branch
    build: int | None = None
    if on is not None and on == repository.default_branch:
        recorded = (found.policy or {}).get("default_branch_build")
        if isinstance(recorded, int):
            build = recorded  # a commit's number never changes: counted once
        else:
            build = default_branch_build(
                session, repository_id=repository.id, commit_id=found.commit_id, branch=on
            )
    return Context(changed_paths=paths, default_branch_build=build, seed=found.plan_id or 0)


@dataclass(eq=False)
class Planned:
    """The policy applied to a plan's tests: what serving it again with the
    same parameters, statistics and change reuses (see `_PLANNED`)."""

    items: Items
    covered: Covered
    decision: Decision
    applied: dict[str, Any]
    _pieces: np.ndarray | None = None
    _shards: dict[int, list[npt.NDArray[np.intp]]] = field(default_factory=dict)

    def pieces(self) -> np.ndarray:
        """Each candidate's JSON object, in pieces (answer.pieces)."""
        if self._pieces is None:
            self._pieces = pieces(self.items, self.covered, self.decision)
        return self._pieces

    def shard(self, shard: Shard) -> npt.NDArray[np.intp]:
        split = self._shards.get(shard.count)
        if split is None:
            decision = self.decision
            split = policies.shards(decision.run_order(), decision.expected_duration, shard.count)
            self._shards[shard.count] = split
        return split[shard.index - 1]


def answer(
    *, found: Found, sha: str, planned: Planned, shard: Shard | None, collected: bool
) -> Answer:
    """The plan as the API returns it (see the contract in the README).
    `collected`: the caller sent the tests it collected, so the plan's
    tests are its whole suite."""
    candidates = planned.covered.candidates
    decision = planned.decision
    if shard is not None:
        listed = in_shard = planned.shard(shard)
    else:
        in_shard = decision.run_order()
        listed = np.concatenate([in_shard, decision.dropped_order()])
    status = found.status.value if found.status is not None else PlanStatus.FALLBACK.value
    message = None
    if len(candidates) == 0 and not collected:
        status, message = NO_TESTS, NO_TESTS_MESSAGE
    fields = head(
        plan_id=found.plan_id,
        sha=sha,
        status=status,
        model_version=found.model_version if found.status is PlanStatus.READY else None,
        policy=decision.policy,
        shard=shard,
    ) | {
        "full_run": decision.full_run,
        "full_run_reason": decision.full_run_reason,
        "run_all": run_all(total=len(candidates), full_run=decision.full_run, collected=collected),
        "total": len(candidates),
        "selected": len(in_shard),
        "duration_selected": round(float(decision.expected_duration[in_shard].sum()), 3),
        "duration_dropped": round(decision.duration_dropped(), 3),
        "expected_failures_dropped": round(
            decision.expected_failures_dropped(candidates.probability), 6
        ),
        "miss_probability": round(decision.miss_probability(candidates.probability), 6),
        "failures_dropped_bound": decision.failures_dropped_bound(candidates.probability),
        "selected_by": decision.selected_by(),
        "escalation": decision.policy.escalation,
        # A shard's answer lists none of the dropped tests: it cannot expand.
        "expand_after": decision.expand_after if shard is None else None,
        "changes_note": found.changes_note,
        "message": message,
    }
    return Answer(fields, joined(planned.pieces(), listed))


# Decisions by (plan, statistics, policy, change, collected tests): the
# shards and retries of a build ask the same question. Bounded by tests (a
# decision keeps its answer's pieces, about 300 bytes a test).
_PLANNED: Lru[tuple[Any, ...], Planned] = Lru(100_000)


def plan(
    session: Session,
    *,
    found: Found,
    repository: RepositoryRef,
    request: PlanRequest,
    policy: Policy,
) -> Planned:
    """The policy applied to the plan's tests, or the same decision made
    before for the same plan, statistics, policy, change and tests."""
    assert found.plan_id is not None
    items = load_items(session, found=found, repository_id=repository.id)
    context = context_of(session, found, repository, request.branch)
    tests = tuple(request.tests) if request.tests is not None else None
    key = (
        database_key(session),
        found.plan_id,
        found.scored_at,
        items.stats.version,
        policy,
        tuple(context.changed_paths),
        context.default_branch_build,
        context.seed,
        tests,
    )
    planned = _PLANNED.get(key)
    if planned is not None:
        return planned
    covered = cover(
        items, request.tests, policy.recent_failures, by_model=found.model_id is not None
    )
    decision = policies.decide(covered.candidates, policy, context)
    applied = applied_policy(decision.policy, request.tests) | {
        "default_branch_build": context.default_branch_build
    }
    planned = Planned(items, covered, decision, applied)
    _PLANNED.put(key, planned, max(len(covered.candidates), 1))
    return planned


def serve(
    session: Session,
    *,
    repository: RepositoryRef,
    sha: str,
    request: PlanRequest,
    policy: Policy,
    shard: Shard | None,
    wait_seconds: float,
    defer: bool = False,
) -> Answer:
    """The plan of a commit under `policy`, scoring it first if need be.
    A policy new to the plan is recorded on it, now or, with `defer`, by
    whoever writes the answer's `pending` record."""
    found = scored(
        session, repository=repository, sha=sha, branch=request.branch, wait_seconds=wait_seconds
    )
    assert found.plan_id is not None
    planned = plan(session, found=found, repository=repository, request=request, policy=policy)
    if len(planned.items) == 0 and found.stats_version != found.current_stats_version:
        # Scored before riskrank knew any test of the repository, and outcomes
        # came in since: score it again, so the tests now known are planned.
        renewed = rescored(session, found, repository_id=repository.id, sha=sha)
        if renewed.plan_id != found.plan_id:
            found = renewed
            planned = plan(
                session, found=found, repository=repository, request=request, policy=policy
            )
    assert found.plan_id is not None
    pending = None
    if found.policy != planned.applied:
        pending = PendingDecision(
            plan_id=found.plan_id,
            size=len(planned.items),
            covered=planned.covered,
            decision=planned.decision,
            applied=planned.applied,
        )
        if not defer:
            pending.write(session)
            pending = None
    served = answer(
        found=found, sha=sha, planned=planned, shard=shard, collected=request.tests is not None
    )
    return replace(served, pending=pending) if pending is not None else served


def plan_for(
    database: Database,
    *,
    repository: RepositoryRef,
    sha: str,
    request: PlanRequest,
    defaults: PlanDefaults,
) -> dict[str, Any]:
    """`plan_answer` as a dict (for the CLI and tests)."""
    return plan_answer(
        database, repository=repository, sha=sha, request=request, defaults=defaults
    ).to_dict()


def plan_answer(
    database: Database,
    *,
    repository: RepositoryRef,
    sha: str,
    request: PlanRequest,
    defaults: PlanDefaults,
    defer: bool = False,
) -> Answer:
    """The plan for a commit, as the API answers it. Raises only
    PlanParameterError (400) for bad parameters: every other failure answers
    a `fallback` plan that runs everything. With `defer`, a decision to
    record on the plan comes back as the answer's `pending` record, for the
    caller to write once the answer is out (`write_decision`)."""
    policy, shard = policy_of(request, repository, defaults)
    try:
        with database.session() as session:
            return serve(
                session,
                repository=repository,
                sha=sha,
                request=request,
                policy=policy,
                shard=shard,
                wait_seconds=defaults.wait_seconds,
                defer=defer,
            )
    except Exception as error:
        log.exception("plan for %s of repository %s failed: falling back", sha, repository.id)
        return fallback(
            database,
            repository_id=repository.id,
            sha=sha,
            request=request,
            policy=policy,
            shard=shard,
            message=f"scoring failed: {type(error).__name__}: {error}"[:500],
        )
