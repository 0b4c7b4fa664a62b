"""The live estimate of what trimming misses, kept on the repository.

After each plan evaluation (scheduler.services.plan_evaluation), the
newest WINDOW_BUILDS evaluated plans of the repository are read again, the
estimate made (scheduler.planning.monitor) and stored on the repository
(`Repository.trimming`) with the ceiling it is held to, the calibration
error of the probabilities those plans served with its own ceiling, and the
escalation they decided (either ceiling passed). The plan API reads that
escalation with the repository it authorises (no extra query), /metrics
reads the figures at scrape, and `riskrank plans show` and `riskrank repo
status` print them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.models import ModelStatus, Plan, Repository, RiskModel
from scheduler.models.base import utcnow
from scheduler.planning import monitor
from scheduler.planning.policy import CONFIDENCE_SCALES


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


def state_of(
    evaluations: list[Any], configured: float | None, calibration_configured: float | None = None
) -> dict[str, Any]:
    """The estimate over `evaluations` (newest first), the ceiling the
    newest plan's policy is held to, the calibration error of what they
    served and its ceiling, and the escalation (either ceiling passed)."""
    evaluated = [e for e in evaluations if isinstance(e, dict)]
    tallies = [monitor.Tally.of_evaluation(e) for e in evaluated]
    found = monitor.estimate(tallies)
    drift = monitor.calibration_check(monitor.CalibrationTally.of_evaluation(e) for e in evaluated)
    newest = (evaluations[0] or {}).get("policy") or {} if evaluations else {}
    ceiling = monitor.ceiling_of(newest, configured)
    calibration_ceiling = monitor.calibration_ceiling_of(newest, calibration_configured)
    misses = monitor.escalation(found, ceiling)
    drifted = monitor.calibration_escalation(drift, calibration_ceiling)
    return (
        found.as_json()
        | drift.as_json()
        | {
            "ceiling": ceiling,
            "calibration_ceiling": calibration_ceiling,
            "escalation": monitor.reasons(misses, drifted),
            # What the budget pays for the builds that expanded.
            "expansion_share": round(monitor.expansion_share(tallies), 6),
            "expanded_builds": sum(1 for e in evaluated if e.get("expanded")),
            "watched_failure_rate": round(monitor.watched_failure_rate(tallies), 6),
            "expansion_catch": round(monitor.expansion_catch(tallies), 6),
            # How far `confidence` plans may go past 1 - t each, so that the
            # window keeps t of the expected failures (1 in other modes).
            "confidence_scale": round(_confidence_scale(newest, tallies), 6),
            # What escalated, for /metrics: "miss_rate", "calibration".
            "escalated_by": [
                cause
                for cause, reason in (("miss_rate", misses), ("calibration", drifted))
                if reason
            ],
        }
    )


def _confidence_scale(newest: dict[str, Any], tallies: list[monitor.Tally]) -> float:
    """`monitor.confidence_scale` for the newest plan's `confidence` target."""
    budget = newest.get("budget")
    if newest.get("mode") != "confidence" or not isinstance(budget, int | float):
        return 1.0
    return monitor.confidence_scale(tallies, float(budget))


def _ceiling(settings: dict[str, Any] | None, key: str) -> float | None:
    """A ceiling the repository sets, checked as plans check its settings
    (one of the wrong type is logged and ignored: the default holds)."""
    # Imported here: plans imports runs, which imports this module (through
    # plan_evaluation).
    from scheduler.services import plans

    value = plans.setting(settings or {}, key)
    return None if value is None else float(value)


def refresh(session: Session, repository_id: int) -> dict[str, Any]:
    """Estimate again and store it on the repository (flushed)."""
    repository = session.get_one(Repository, repository_id)
    state = state_of(
        window(session, repository_id),
        _ceiling(repository.settings, "miss_ceiling"),
        _ceiling(repository.settings, "calibration_ceiling"),
    ) | {"updated_at": utcnow().isoformat()}
    repository.trimming = state
    session.flush()
    return state


def escalation_of(repository: Repository) -> str | None:
    state = repository.trimming or {}
    reason = state.get("escalation")
    return reason if isinstance(reason, str) else None


def expansion_share_of(repository: Repository) -> float:
    return _share_of(repository, "expansion_share")


def watched_failure_rate_of(repository: Repository) -> float:
    return _share_of(repository, "watched_failure_rate")


def expansion_catch_of(repository: Repository) -> float:
    return _share_of(repository, "expansion_catch")


def confidence_scale_of(repository: Repository) -> float:
    """The repository's `Policy.confidence_scale` (1 when none is kept, or
    one out of policy.CONFIDENCE_SCALES)."""
    value = (repository.trimming or {}).get("confidence_scale")
    low, high = CONFIDENCE_SCALES
    return float(value) if isinstance(value, int | float) and low <= value <= high else 1.0


def _share_of(repository: Repository, key: str) -> float:
    """A share kept on the repository's trimming state, 0 when it is not one."""
    value = (repository.trimming or {}).get(key)
    return float(value) if isinstance(value, int | float) and 0 <= value <= 1 else 0.0


def sentence(state: dict[str, Any] | None) -> str:
    """The live estimate as a person reads it."""
    if not state or state.get("builds") in (None, 0):
        return "no evaluated plan yet: nothing is known of what trimming misses"
    builds = state["builds"]
    over = f"over the last {builds} evaluated build{'s' if builds != 1 else ''}"

    def share(key: str) -> str:
        value = state.get(key)
        return "-" if value is None else f"{value:.1%}"

    if state.get("miss_rate") is None:
        text = f"{over}: no failure seen, nothing to estimate from"
    else:
        text = (
            f"{over}: trimming let through an estimated {share('miss_rate')} of the failures "
            f"(95% interval {share('miss_rate_low')} to {share('miss_rate_high')}, from "
            f"{state.get('explored_failures', 0)} failures in the exploration sample)"
        )
        if state.get("ceiling") is not None:
            text += f"; the mode promises at most {share('ceiling')}"
    ece = state.get("calibration_error")
    if isinstance(ece, int | float):
        scored = state.get("calibration_builds", 0)
        low = state.get("calibration_error_low")
        bound = (
            f" (95% interval from {low:.3f})"
            if isinstance(low, int | float) and round(low, 3) < round(ece, 3)
            else ""
        )
        text += (
            f"; calibration error {ece:.3f}{bound} over {scored} evaluated "
            f"build{'s' if scored != 1 else ''} of the serving scorer"
        )
        if state.get("calibration_ceiling") is not None:
            text += f" (ceiling {state['calibration_ceiling']:g})"
    expanded = state.get("expanded_builds")
    if isinstance(expanded, int) and expanded > 0:
        text += (
            f"; {expanded} build{'s' if expanded != 1 else ''} expanded, running "
            f"{share('expansion_share')} of the tests the plans dropped"
        )
    scale = state.get("confidence_scale")
    if isinstance(scale, int | float) and scale != 1.0:
        text += (
            f"; confidence plans may let through {scale:.2f} times their 1 - t, so that "
            "these builds keep t of their expected failures"
        )
    if state.get("escalation"):
        text += ". Escalated: every test over the budget runs"
    return text


def calibration_error(session: Session, repository_id: int) -> float | None:
    """The expected calibration error of the probabilities plans carry: the
    active model's calibration's, else the heuristic's of the newest training."""
    active = session.scalar(
        select(RiskModel.metrics).where(
            RiskModel.repository_id == repository_id, RiskModel.status == ModelStatus.ACTIVE
        )
    )
    if active is not None:
        stored = active.get("calibration") or {}
    else:
        newest = session.scalar(
            select(RiskModel.metrics)
            .where(RiskModel.repository_id == repository_id)
            .order_by(RiskModel.version.desc())
            .limit(1)
        )
        stored = (newest or {}).get("heuristic_calibration") or {}
    ece = stored.get("ece")
    return float(ece) if isinstance(ece, int | float) else None


def status_of(session: Session, repository: Repository) -> dict[str, Any]:
    """What `riskrank repo status` shows: the live estimate, the escalation
    and the calibration error of the probabilities plans carry."""
    version = session.scalar(
        select(RiskModel.version).where(
            RiskModel.repository_id == repository.id, RiskModel.status == ModelStatus.ACTIVE
        )
    )
    return {
        "repository": repository.full_name,
        "model_version": version,
        "calibration_error": calibration_error(session, repository.id),
        "trimming": repository.trimming,
        "escalation": escalation_of(repository),
        "text": sentence(repository.trimming),
    }
