"""Commit statuses (off by default, per repository: `riskrank repo api
--commit-status`): when CI follows a plan, riskrank posts a status on the
commit with a one-line summary of the plan (tests selected, CI time saved,
miss risk); once the plan's runs are ingested, the same status again with
its outcome (failures caught). GitHub's statuses API and GitLab's commit
statuses API, with the repository's provider token.

The status is informative: its state is always `success` (riskrank never
fails or holds a build), its context `riskrank`. Posting it is best
effort: a provider that refuses is logged and counted
(riskrank_commit_statuses_total), nothing retries it, and the next
evaluation posts the status again (the provider keeps the newest one)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.db import Database
from scheduler.models import Commit, Plan, Provider, Repository, SuiteRun
from scheduler.planning.records import NOT_COLLECTED, DecisionRecord, Payload, RecordError
from scheduler.providers_api import github as github_api
from scheduler.providers_api import gitlab as gitlab_api
from scheduler.providers_api.http import HttpSettings
from scheduler.queue import STATUSES_POST, send_now
from scheduler.services import provider_access

log = logging.getLogger(__name__)

CONTEXT = "riskrank"
STATE = {Provider.GITHUB: "success", Provider.GITLAB: "success"}


@dataclass(frozen=True)
class PlanSummary:
    """What a commit status and a job summary say of a plan."""

    total: int
    selected: int
    seconds_saved: float
    miss_probability: float
    failures: int | None = None  # once outcomes are in
    caught: int | None = None

    def line(self) -> str:
        """One line, at most 140 characters (GitHub's limit)."""
        text = (
            f"{self.selected} of {self.total} tests selected, "
            f"~{duration_text(self.seconds_saved)} saved"
        )
        if self.failures is None:
            return f"{text}, miss risk {percent(self.miss_probability)}"
        if self.failures == 0:
            return f"{text}; no failure"
        return f"{text}; caught {self.caught} of {self.failures} failures"


def duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{round(seconds)} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def percent(probability: float) -> str:
    value = 100 * probability
    return f"{value:.0f}%" if value >= 10 or value == 0 else f"{value:.1f}%"


def summarize(
    payload: Payload, decision: DecisionRecord | None, evaluation: dict[str, Any] | None
) -> PlanSummary:
    """A plan's figures from its stored records (pure): the tests CI
    collected, those selected, the expected seconds and failure chance of
    those dropped, and what the outcomes caught."""
    if decision is None or len(decision) != len(payload):
        chosen = np.ones(len(payload), dtype=bool)
        collected = chosen
    else:
        collected = decision.selected != NOT_COLLECTED
        chosen = decision.selected == 1
    dropped = collected & ~chosen
    durations = payload.duration[dropped]
    saved = float(np.clip(durations[np.isfinite(durations)], 0.0, None).sum())
    probabilities = np.clip(payload.probability[dropped], 0.0, 1.0)
    miss = 1.0 - float(np.prod(1.0 - probabilities[np.isfinite(probabilities)]))
    failures = caught = None
    if evaluation:
        failures = int(evaluation.get("failures") or 0)
        caught = int(evaluation.get("failures_caught") or 0)
    return PlanSummary(
        total=int(collected.sum()),
        selected=int(chosen.sum()),
        seconds_saved=round(saved, 3),
        miss_probability=0.0 if math.isclose(miss, 0.0, abs_tol=1e-12) else miss,
        failures=failures,
        caught=caught,
    )


@dataclass(frozen=True)
class StatusJob:
    plan_id: int
    access: provider_access.ProviderAccess
    sha: str
    description: str


def enabled(session: Session, plan_id: int) -> bool:
    """Whether the plan's repository posts commit statuses (and can: a token)."""
    row = session.execute(
        select(Repository.commit_status, Repository.provider_token)
        .join(Plan, Plan.repository_id == Repository.id)
        .where(Plan.id == plan_id)
    ).first()
    return row is not None and bool(row[0]) and bool(row[1])


def status_job(session: Session, plan_id: int) -> StatusJob | None:
    """The status to post for a plan; None when the repository does not
    post statuses, has no token, or the plan has no payload to sum up."""
    plan = session.get(Plan, plan_id)
    if plan is None or not enabled(session, plan_id):
        return None
    repository = session.get_one(Repository, plan.repository_id)
    sha = session.scalar(select(Commit.sha).where(Commit.id == plan.commit_id))
    blob = session.scalar(select(Plan.payload).where(Plan.id == plan_id))
    record = session.scalar(select(Plan.decision).where(Plan.id == plan_id))
    if sha is None or blob is None:
        return None
    try:
        payload = Payload.decode(bytes(blob))
        decision = DecisionRecord.decode(bytes(record)) if record is not None else None
    except RecordError:
        log.warning("plan %s: its records cannot be read, no status posted", plan_id)
        return None
    summary = summarize(payload, decision, plan.evaluation)
    return StatusJob(
        plan_id=plan_id,
        access=provider_access.access_of(repository),
        sha=sha,
        description=f"riskrank: {summary.line()}",
    )


def post(job: StatusJob, *, http: HttpSettings) -> None:
    """Post the status (ProviderApiError when the provider refuses)."""
    access = job.access
    assert access.token is not None
    if access.provider is Provider.GITHUB:
        with github_api.client(access.api_url, access.token, http) as api:
            github_api.post_status(
                api,
                access.full_name,
                job.sha,
                state=STATE[access.provider],
                description=job.description,
                context=CONTEXT,
            )
        return
    with gitlab_api.client(access.api_url, access.token, http) as api:
        gitlab_api.post_status(
            api,
            gitlab_api.project_ref(None, access.full_name),
            job.sha,
            state=STATE[access.provider],
            description=job.description,
            context=CONTEXT,
        )


def queue_for_plan(database: Database, celery: Celery, plan_id: int) -> bool:
    """Queue the plan's status if its repository posts them (never raises:
    a status is not worth a failed answer or ingestion)."""
    try:
        with database.session() as session:
            wanted = enabled(session, plan_id)
    except Exception:
        log.exception("plan %s: could not tell whether to post its status", plan_id)
        return False
    # A status is best-effort: no sweeper posts one whose message was lost.
    return wanted and send_now(celery, STATUSES_POST, plan_id, swept=False)


def plan_of_run(session: Session, run_id: int) -> int | None:
    return session.scalar(select(SuiteRun.plan_id).where(SuiteRun.id == run_id))
