"""Recording what a policy decided on its plan: the applied policy and the
decision record (scheduler.planning.records.DecisionRecord), one row
written after the API's answer went out."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from scheduler.db import Database
from scheduler.models import Plan
from scheduler.planning.policy import Decision, Policy
from scheduler.planning.records import DecisionRecord
from scheduler.services.plans.items import Covered

log = logging.getLogger(__name__)


def applied_policy(policy: Policy, tests: Sequence[str] | None) -> dict[str, Any]:
    """The policy as recorded on the plan, with the collected tests' digest."""
    record = policy.as_json()
    if tests is not None:
        digest = hashlib.sha256("\n".join(sorted(set(tests))).encode()).hexdigest()
        record["tests"] = digest
    else:
        record["tests"] = None
    return record


@dataclass(frozen=True, eq=False)
class PendingDecision:
    """A decision not yet recorded on its plan, turned into its record only
    when written (on the API's background task, off the answer's path)."""

    plan_id: int
    size: int  # the plan's tests
    covered: Covered
    decision: Decision
    applied: dict[str, Any]

    def record(self) -> DecisionRecord:
        return DecisionRecord.of(
            self.size,
            rows=self.covered.row,
            selected=self.decision.selected,
            propensity=self.decision.propensity,
            rules=[rule.value for rule in self.decision.rules],
            ranks=self.decision.ranks,
        )

    def write(self, session: Session) -> None:
        """The applied policy and its record, on the plan's row: one
        statement, so concurrent writes (shards asking at once, one policy
        after another) leave one of them whole."""
        session.execute(
            update(Plan)
            .where(Plan.id == self.plan_id)
            .values(policy=self.applied, decision=self.record().encode())
        )


def write_decision(database: Database, pending: PendingDecision) -> None:
    """Write a decision after the answer went out (the API's background
    task). Never raises: the plan was served; a lost record only leaves the
    plan's evaluation without its selection, and the next request for the
    same policy writes it again."""
    try:
        with database.session() as session:
            pending.write(session)
    except Exception:
        log.exception("could not record the decision of plan %s", pending.plan_id)
