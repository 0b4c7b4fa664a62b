"""The live estimate of what trimming misses, kept on the repository.

After each plan evaluation (scheduler.services.plan_evaluation), the
newest WINDOW_BUILDS evaluated plans of the repository are read again, the
estimate made (scheduler.planning.monitor) and stored on the repository
(`Repository.trimming`) with the ceiling it is held to and the escalation it
decided. The plan API reads that escalation with the repository it
authorises (no extra query), /metrics reads the figures at scrape, and
`riskrank plans show` and `riskrank repo status` print them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.models import Plan, Repository
from scheduler.models.base import utcnow
from scheduler.planning import monitor


def window(session: Session, repository_id: int, builds: int = monitor.WINDOW_BUILDS) -> list[Any]:
    """The evaluations of the repository's newest `builds` evaluated plans, newest first."""
    return list(
        session.scalars(
            select(Plan.evaluation)
            .where(Plan.repository_id == repository_id, Plan.evaluation.is_not(None))
            .order_by(Plan.id.desc())
            .limit(builds)
        )
    )


def state_of(evaluations: list[Any], configured: float | None) -> dict[str, Any]:
    """The estimate over `evaluations` (newest first), the ceiling the
    newest plan's policy is held to, and the escalation."""
    tallies = [monitor.Tally.of_evaluation(e) for e in evaluations if isinstance(e, dict)]
    found = monitor.estimate(tallies)
    newest = (evaluations[0] or {}).get("policy") or {} if evaluations else {}
    ceiling = monitor.ceiling_of(newest, configured)
    return found.as_json() | {
        "ceiling": ceiling,
        "escalation": monitor.escalation(found, ceiling),
    }


def refresh(session: Session, repository_id: int) -> dict[str, Any]:
    """Estimate again and store it on the repository (flushed)."""
    repository = session.get_one(Repository, repository_id)
    configured = (repository.settings or {}).get("miss_ceiling")
    if isinstance(configured, bool) or not isinstance(configured, int | float):
        configured = None
    state = state_of(window(session, repository_id), configured) | {
        "updated_at": utcnow().isoformat()
    }
    repository.trimming = state
    session.flush()
    return state


def escalation_of(repository: Repository) -> str | None:
    state = repository.trimming or {}
    reason = state.get("escalation")
    return reason if isinstance(reason, str) else None
