"""Test runs: a report is stored as it arrived, then ingested into history
(executions, known tests, per-test statistics, file-test links)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from scheduler import metrics
from scheduler.ingest.errors import MalformedPayload
from scheduler.ingest.json_results import case_results, parse_run_json
from scheduler.ingest.junit import parse_junit
from scheduler.ingest.results import CaseResult, storable_results
from scheduler.models import (
    Commit,
    Execution,
    KnownTest,
    KnownTestStats,
    Plan,
    Repository,
    RunSource,
    RunStatus,
    SuiteRun,
)
from scheduler.models.base import utcnow
from scheduler.services import plan_evaluation, retry, sql
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


# A report of more distinct tests than this is ingested in steps of this
# many, each its own transaction (RunIngestion): on SQLite a transaction
# holds the database's one write lock, on PostgreSQL the repository's row,
# and neither may be held for the minute a 100,000-test report takes.
STEP_TESTS = 2000
# The pause between two steps on SQLite, longer than the 100 ms between two
# tries of a writer waiting on the lock (its busy handler's longest sleep).
SQLITE_YIELD_SECONDS = 0.15
# A step that created this many tests has their tables analysed if the
# planner's statistics still count fewer rows than it added (a fresh table).
ANALYZE_NEW_TESTS = 1000


@dataclass
class RunIngestion:
    """One execution of a run's ingestion (a task, or a caller that wants
    it whole), in steps of at most `step_tests` distinct tests (None: all
    at once). Call `step(session)` in a transaction of its own until it
    answers something other than PENDING.

    Each step locks the repository's row, then the run's, and records how
    far it came (SuiteRun.ingested_tests) in the transaction that wrote
    the step's rows: a redelivered task (a worker killed half-way) goes on
    from there, so every result is counted once. The steps of one report
    cover disjoint sets of tests (all attempts of a test in one step), so a
    test's statistics advance once per report. Ingestions of a repository
    stay one after the other: while another run of the repository is half
    way, a step waits for it (PENDING, having slept `wait_seconds` before
    its transaction), and finishes it itself once it made no progress for
    `stalled_seconds` (its worker died) or at once when not in steps."""

    run_id: int
    step_tests: int | None = STEP_TESTS
    wait_seconds: float = 0.5
    stalled_seconds: float = 30.0
    # Parsed once per execution, by run id.
    _parsed: dict[int, _Parsed] = field(default_factory=dict)
    _unparsed: dict[int, tuple[RunSource, bytes]] = field(default_factory=dict)
    _counted: bool = False
    # The other run waited for, its progress, and since when it stands.
    _waiting: tuple[int, int] | None = None
    _waiting_since: float = 0.0
    _adopted: set[int] = field(default_factory=set)  # stalled runs this one finishes
    _yield_lock: bool = False

    def step(self, session: Session) -> RunStatus | None:
        """Fold the run's next part in; PENDING while there is more to do,
        else the run's final status (None: there is no such run)."""
        if self._waiting is not None:
            time.sleep(self.wait_seconds)
        elif self._yield_lock:
            # SQLite's lock is not fair: a writer that waits on it polls it
            # (every 100 ms once it has waited a while), and a step that
            # begins right after the one before committed takes it first,
            # over and over (the API waited 9 s through several steps).
            time.sleep(SQLITE_YIELD_SECONDS)
        self._yield_lock = False
        for run_id, (source, report) in list(self._unparsed.items()):
            del self._unparsed[run_id]
            # A report that cannot be parsed is parsed again in the
            # transaction, which fails the run.
            with contextlib.suppress(MalformedPayload):
                self._parsed[run_id] = _Parsed.of(parse_report(source, report))
        repository_id = session.scalar(
            select(SuiteRun.repository_id).where(SuiteRun.id == self.run_id)
        )
        if repository_id is None:
            log.warning("run %s does not exist", self.run_id)
            return None
        # FOR NO KEY UPDATE: other ingestions of the repository wait (they
        # read what this one writes), but rows that only refer to the
        # repository (events, commits, reports) are written meanwhile.
        session.execute(
            select(Repository.id)
            .where(Repository.id == repository_id)
            .with_for_update(key_share=True)
        )
        unfinished = session.scalar(
            select(SuiteRun.id)
            .where(
                SuiteRun.repository_id == repository_id,
                SuiteRun.status == RunStatus.PENDING,
                SuiteRun.ingested_tests > 0,
                SuiteRun.id != self.run_id,
            )
            .order_by(SuiteRun.id)
            .limit(1)
        )
        if (
            unfinished is not None
            and self.step_tests is not None
            and unfinished not in self._adopted
        ):
            progress = session.scalar(
                select(SuiteRun.ingested_tests).where(SuiteRun.id == unfinished)
            )
            now = time.monotonic()
            if self._waiting != (unfinished, progress):
                self._waiting, self._waiting_since = (unfinished, progress or 0), now
            if now - self._waiting_since < self.stalled_seconds:
                return RunStatus.PENDING
            log.warning("run %s stalled half-way: run %s finishes it", unfinished, self.run_id)
            self._adopted.add(unfinished)
        self._waiting = None
        # Without the report (read once, to parse it): each step of a large
        # one would otherwise fetch its megabytes again.
        run = session.get_one(
            SuiteRun,
            self.run_id if unfinished is None else unfinished,
            with_for_update=True,
            options=[defer(SuiteRun.report)],
        )
        if run.status is not RunStatus.PENDING:
            # (Another run given up on between the two reads: go on.)
            return run.status if run.id == self.run_id else RunStatus.PENDING
        if run.id == self.run_id and not self._counted:
            run.attempts += 1
            self._counted = True
        if run.id not in self._parsed and self.step_tests is not None:
            # Parsed at the start of the next step, before its transaction
            # begins: on SQLite a transaction holds the write lock, and a
            # 100,000-test report takes seconds to parse.
            self._unparsed[run.id] = (run.source, run.report or b"")
            return RunStatus.PENDING
        try:
            parsed = self._results(run)
        except MalformedPayload as error:
            run.status = RunStatus.FAILED
            run.error = error.message[: retry.ERROR_TEXT_LIMIT]
            _count_ended(session, run)
            return run.status if run.id == self.run_id else RunStatus.PENDING
        start = run.ingested_tests
        stop = (
            parsed.tests if self.step_tests is None else min(start + self.step_tests, parsed.tests)
        )
        ingestor = Ingestor(session, run.repository_id)
        summary = ingestor.ingest(run, parsed.of_tests(start, stop), at=run.received_at)
        ingestor.flush()
        if summary.new_tests >= ANALYZE_NEW_TESTS:
            sql.analyze_if_unplanned(
                session, KnownTest, rows_added=summary.new_tests, also=(KnownTestStats, Execution)
            )
        run.ingested_tests = stop
        slug = metrics.repository_label(session, run.repository_id)
        metrics.after_commit(
            session, metrics.EXECUTIONS_INGESTED.labels(repository=slug), summary.executions
        )
        log.info(
            "run %s: tests %d-%d of %d (%d new), %d executions, %d flaky",
            run.id,
            start + 1,
            run.ingested_tests,
            parsed.tests,
            summary.new_tests,
            summary.executions,
            summary.flaky,
        )
        if stop < parsed.tests:
            self._yield_lock = session.get_bind().dialect.name == "sqlite"
            return RunStatus.PENDING
        run.status = RunStatus.INGESTED
        run.ingested_at = utcnow()
        run.error = None
        _count_ended(session, run)
        self._parsed.pop(run.id, None)
        if run.plan_id is not None:
            plan_evaluation.evaluate_after_ingestion(session, run.plan_id)
        return run.status if run.id == self.run_id else RunStatus.PENDING

    def _results(self, run: SuiteRun) -> _Parsed:
        parsed = self._parsed.get(run.id)
        if parsed is None:
            parsed = self._parsed[run.id] = _Parsed.of(parse_report(run.source, run.report or b""))
        return parsed


@dataclass(frozen=True)
class _Parsed:
    """A report's results grouped by test, the tests in the order the
    report first names them: the results of tests [start, stop) are one
    slice (a step takes them without scanning the others)."""

    results: list[CaseResult]
    bounds: list[int]  # test i's results are results[bounds[i]:bounds[i + 1]]

    @classmethod
    def of(cls, results: list[CaseResult]) -> _Parsed:
        order: dict[str, int] = {}
        for result in results:
            order.setdefault(result.test, len(order))
        # Stable: a test's attempts keep their order.
        grouped = sorted(results, key=lambda result: order[result.test])
        bounds = [0]
        for index in range(1, len(grouped)):
            if grouped[index].test != grouped[index - 1].test:
                bounds.append(index)
        bounds.append(len(grouped))
        return cls(grouped, bounds if grouped else [0])

    @property
    def tests(self) -> int:
        return len(self.bounds) - 1

    def of_tests(self, start: int, stop: int) -> list[CaseResult]:
        return self.results[self.bounds[start] : self.bounds[stop]]


def ingest_run(session: Session, run_id: int) -> RunStatus | None:
    """Ingest a stored report once, whole, in the caller's transaction (a
    report that cannot be parsed fails the run with the reason; other
    errors propagate for the caller to record). The worker goes in steps."""
    ingestion = RunIngestion(run_id, step_tests=None)
    while (status := ingestion.step(session)) is RunStatus.PENDING:
        pass  # another run of the repository, left half-way, came first
    return status


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
        _count_ended(session, run)
    return run.status


def _count_ended(session: Session, run: SuiteRun) -> None:
    """riskrank_runs_ingested_total, once the run's final status commits."""
    slug = metrics.repository_label(session, run.repository_id)
    metrics.after_commit(
        session, metrics.RUNS_INGESTED.labels(repository=slug, result=run.status.value)
    )


def claim_pending_runs(
    session: Session, *, queued_before: datetime, max_attempts: int, limit: int = 500
) -> list[int]:
    """Stored reports nobody ingested in time, to queue again."""
    return retry.claim_stale(
        session, SuiteRun, queued_before=queued_before, max_attempts=max_attempts, limit=limit
    )
