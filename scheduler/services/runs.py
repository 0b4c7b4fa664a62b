"""Test runs: a report is stored as it arrived, then ingested into history
(executions, known tests, per-test statistics, file-test links)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.ingest.errors import MalformedPayload
from scheduler.ingest.json_results import case_results, parse_run_json
from scheduler.ingest.junit import parse_junit
from scheduler.ingest.results import CaseResult, storable_results
from scheduler.models import Commit, Plan, Repository, RunSource, RunStatus, SuiteRun
from scheduler.models.base import utcnow
from scheduler.services import plan_evaluation, retry
from scheduler.services.ingestion import Ingestor
from scheduler.services.sql import insert_one_ignoring

log = logging.getLogger(__name__)

# A stored report was checked against the body limit when it arrived; a
# gzip inside it (sent compressed twice) may inflate up to this.
STORED_REPORT_LIMIT = 1 << 30


# --- storing ------------------------------------------------------------------


class RunError(MalformedPayload):
    """A run that cannot be accepted as sent (400)."""


def ensure_commit(
    session: Session, *, repository: Repository, sha: str, branch: str | None = None
) -> int:
    """The id of a commit, recording it if riskrank has not seen it yet."""
    commit_id = insert_one_ignoring(
        session,
        Commit,
        {"repository_id": repository.id, "sha": sha, "branch": branch, "created_at": utcnow()},
        conflict=["repository_id", "sha"],
        returning=Commit.id,
    )
    if commit_id is not None:
        return int(commit_id)
    existing = session.scalar(
        select(Commit.id).where(Commit.repository_id == repository.id, Commit.sha == sha)
    )
    assert existing is not None
    return existing


@dataclass(frozen=True)
class StoredRun:
    id: int
    created: bool  # False: this very report was already stored for the commit


def store_run(
    session: Session,
    *,
    repository: Repository,
    commit_sha: str,
    branch: str | None,
    run_key: str | None,
    plan_id: int | None,
    source: RunSource,
    content_type: str,
    report: bytes,
) -> StoredRun:
    """Keep a report exactly as it arrived; the same report twice is kept once."""
    if plan_id is not None:
        plan_repository = session.scalar(select(Plan.repository_id).where(Plan.id == plan_id))
        if plan_repository != repository.id:
            raise RunError(f"plan {plan_id} is not a plan of {repository.full_name}")
    commit_id = ensure_commit(session, repository=repository, sha=commit_sha, branch=branch)
    digest = hashlib.sha256(report).hexdigest()
    inserted = insert_one_ignoring(
        session,
        SuiteRun,
        {
            "repository_id": repository.id,
            "commit_id": commit_id,
            "plan_id": plan_id,
            "source": source,
            "run_key": run_key,
            "status": RunStatus.PENDING,
            "content_type": content_type,
            "report": report,
            "report_sha256": digest,
            "received_at": utcnow(),
            "attempts": 0,
        },
        conflict=["repository_id", "commit_id", "report_sha256"],
        returning=SuiteRun.id,
    )
    if inserted is not None:
        return StoredRun(id=inserted, created=True)
    existing = session.scalar(
        select(SuiteRun.id).where(
            SuiteRun.repository_id == repository.id,
            SuiteRun.commit_id == commit_id,
            SuiteRun.report_sha256 == digest,
        )
    )
    assert existing is not None
    return StoredRun(id=existing, created=False)


def parse_report(source: RunSource, report: bytes) -> list[CaseResult]:
    """The results in a stored report (the same parsing and checks the API
    ran on it: a report stored before they existed fails at once)."""
    if source is RunSource.JUNIT:
        results = parse_junit(report, max_bytes=STORED_REPORT_LIMIT)
        storable_results(results, "testcase")
        return results
    results = case_results(parse_run_json(report).results)
    storable_results(results, "results")
    return results


# --- ingesting ----------------------------------------------------------------


def ingest_run(session: Session, run_id: int) -> RunStatus | None:
    """Ingest a stored report once. A report that cannot be parsed fails the
    run with the reason; other errors propagate for the caller to record."""
    run = session.get(SuiteRun, run_id, with_for_update=True)
    if run is None:
        log.warning("run %s does not exist", run_id)
        return None
    if run.status is not RunStatus.PENDING:
        return run.status
    run.attempts += 1
    try:
        results = parse_report(run.source, run.report or b"")
    except MalformedPayload as error:
        run.status = RunStatus.FAILED
        run.error = error.message[: retry.ERROR_TEXT_LIMIT]
        return run.status
    ingestor = Ingestor(session, run.repository_id)
    summary = ingestor.ingest(run, results, at=run.received_at)
    ingestor.flush()
    run.status = RunStatus.INGESTED
    run.ingested_at = utcnow()
    run.error = None
    if run.plan_id is not None:
        plan_evaluation.evaluate_after_ingestion(session, run.plan_id)
    log.info(
        "run %s: %d tests (%d new), %d executions, %d flaky",
        run.id,
        summary.tests,
        summary.new_tests,
        summary.executions,
        summary.flaky,
    )
    return run.status


def record_run_error(
    session: Session, run_id: int, *, error: str, max_attempts: int
) -> RunStatus | None:
    """Note why ingestion failed; give up once the attempts are spent."""
    run = session.get(SuiteRun, run_id, with_for_update=True)
    if run is None:
        return None
    if run.status is RunStatus.PENDING and retry.count_failure(
        run, error=error, max_attempts=max_attempts
    ):
        run.status = RunStatus.FAILED
    return run.status


def claim_pending_runs(
    session: Session, *, queued_before: datetime, max_attempts: int, limit: int = 500
) -> list[int]:
    """Stored reports nobody ingested in time, to queue again."""
    return retry.claim_stale(
        session, SuiteRun, queued_before=queued_before, max_attempts=max_attempts, limit=limit
    )
