"""Test results pulled from the CI: no upload step in the pipeline.

A completed GitHub `workflow_run` or a finished GitLab Pipeline Hook is
stored as an event like a push. Its processing goes in three steps, and only
the first and the last hold a transaction: the provider's API is called in
between, with nothing locked (on SQLite a transaction holds the database's
one write lock, and a pull may wait on a rate limit):

1. `pull_job` reads what to pull (the event, the repository's token);
2. `fetch_reports` asks the provider: GitHub's run artifacts whose names
   match the repository's globs, unpacked in memory with bounds, each JUnit
   file in them a report; GitLab's pipeline test report, written back as
   JUnit XML, or when it is empty or absent (no `artifacts:reports:junit`,
   a GitLab without the report) the JUnit files in the jobs' artifacts
   archives, read as GitHub's artifacts are; and (`fetch_jobs`,
   best-effort) GitHub's jobs of the run's attempt with their conclusions:
   a failure to list them is noted on the event, the reports are stored all
   the same;
3. `store_reports` stores each report as an uploaded one is stored
   (scheduler.services.runs.store_run: the same report twice is kept once)
   and queues its ingestion, keeps the jobs' conclusions on the event
   (`CiEvent.summary`), and marks the event handled. A run that left no
   JUnit report but has a failed job says so in the event's error: that is
   why no outcomes came (no outcome is made up for it).

A failure worth another try (5xx, timeouts, rate limits past the pull's time
limit) leaves the event pending with its error, for the sweeper to queue
again until its attempts are spent; one that is not (no token, 401, 404, a
zip bomb) fails the event with its reason. Either way the event stays."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session

from scheduler.ingest import artifacts, github, gitlab
from scheduler.ingest.errors import IngestError
from scheduler.models import CiEvent, EventStatus, Provider, Repository, RunSource
from scheduler.models.base import utcnow
from scheduler.providers_api import github as github_api
from scheduler.providers_api import gitlab as gitlab_api
from scheduler.providers_api.http import ApiClient, HttpSettings, ProviderApiError
from scheduler.queue import RUNS_INGEST, enqueue_after_commit
from scheduler.services import provider_access, retry, runs

log = logging.getLogger(__name__)

PULLED_EVENTS = frozenset(
    {(Provider.GITHUB, github.WORKFLOW_RUN), (Provider.GITLAB, gitlab.PIPELINE)}
)
JUNIT_CONTENT_TYPE = "application/xml"
# A job's conclusions that mean it failed (GitHub's check run conclusions).
FAILED_CONCLUSIONS = frozenset({"failure", "timed_out"})
# The most jobs `CiEvent.summary` keeps of a run: the client follows up to
# 100 pages of 100 jobs, megabytes on one event row. The failed ones are kept
# first (they say why a run brought no outcomes); the rest are counted.
SUMMARY_JOBS = 100


class PullFailed(Exception):
    """A pull that did not bring its reports; `retryable`: a later try may,
    `retry_after`: the seconds the provider asked to wait, when it said."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class Run:
    """What a pull takes from the event's CI run, either provider's."""

    sha: str
    branch: str | None
    run_key: str
    run_id: int  # GitHub's workflow run, GitLab's pipeline
    project_id: int | None = None  # GitLab's numeric project id, if the hook gave it
    attempt: int = 1  # GitHub's run attempt


@dataclass(frozen=True)
class PullJob:
    """What one pull needs, read in a short transaction (step 1)."""

    event_id: int
    repository_id: int
    access: provider_access.ProviderAccess
    run: Run


@dataclass(frozen=True)
class JobsRead:
    """A run's jobs as the provider listed them, or (`jobs` None) why they
    could not be listed."""

    jobs: tuple[github_api.Job, ...] | None
    error: str | None = None

    def summary(self) -> dict[str, Any] | None:
        """What `CiEvent.summary` keeps of them: at most SUMMARY_JOBS, the
        failed ones first, in the order listed; `more_jobs` counts the rest
        (absent when none is left out)."""
        jobs = self.jobs
        if jobs is None:
            return None
        failed_first = sorted(
            range(len(jobs)), key=lambda i: jobs[i].conclusion not in FAILED_CONCLUSIONS
        )
        kept = [jobs[i] for i in sorted(failed_first[:SUMMARY_JOBS])]
        summary: dict[str, Any] = {
            "jobs": [{"name": job.name, "conclusion": job.conclusion} for job in kept]
        }
        if len(kept) < len(jobs):
            summary["more_jobs"] = len(jobs) - len(kept)
        return summary

    def failed(self) -> list[str]:
        return [job.name for job in self.jobs or () if job.conclusion in FAILED_CONCLUSIONS]


def is_pull(provider: Provider, event: str) -> bool:
    return (provider, event) in PULLED_EVENTS


def wanted(
    session: Session,
    *,
    repository_id: int,
    provider: Provider,
    event: str,
    payload: Mapping[str, Any],
) -> bool:
    """Whether a verified delivery is a pull riskrank makes: a completed run
    or finished pipeline, of a repository with a provider token."""
    if provider is Provider.GITHUB and event == github.WORKFLOW_RUN:
        ready = github.is_completed_run(payload)
    elif provider is Provider.GITLAB and event == gitlab.PIPELINE:
        ready = gitlab.is_finished_pipeline(payload)
    else:
        return False
    return ready and provider_access.pulls_results(session, repository_id)


def _run_of(provider: Provider, payload: Mapping[str, Any]) -> Run:
    """The run a pull event names; MalformedPayload when it names none."""
    if provider is Provider.GITHUB:
        run = github.parse_workflow_run(payload)
        return Run(run.head_sha, run.head_branch, run.run_key, run.id, attempt=run.attempt)
    pipeline = gitlab.parse_pipeline(payload)
    return Run(pipeline.sha, pipeline.ref, pipeline.run_key, pipeline.id, pipeline.project_id)


def check_payload(provider: Provider, payload: Mapping[str, Any]) -> None:
    """Refuse (MalformedPayload) what a pull could not be made from."""
    _run_of(provider, payload)


def pull_job(session: Session, event_id: int) -> PullJob | None:
    """The pull a stored event asks for; None when it is not a pull event
    or is no longer pending (handled, failed: nothing to do)."""
    event = session.get(CiEvent, event_id)
    if (
        event is None
        or event.status is not EventStatus.PENDING
        or event.repository_id is None
        or not is_pull(event.provider, event.event)
    ):
        return None
    repository = session.get_one(Repository, event.repository_id)
    return PullJob(
        event_id=event.id,
        repository_id=repository.id,
        access=provider_access.access_of(repository),
        run=_run_of(event.provider, event.payload),
    )


# --- step 2: the provider's API, nothing locked --------------------------------


def _github_reports(
    job: PullJob, http: HttpSettings, limits: artifacts.ZipLimits
) -> list[artifacts.Report]:
    assert job.access.token is not None
    with github_api.client(job.access.api_url, job.access.token, http) as api:
        listed = github_api.run_artifacts(api, job.access.full_name, job.run.run_id)
        chosen = [
            artifact
            for artifact in listed
            if not artifact.expired
            and provider_access.name_matches(artifact.name, job.access.patterns)
        ]
        log.info(
            "workflow run %s: %d artifacts, %d match %s",
            job.run.run_id,
            len(listed),
            len(chosen),
            ",".join(job.access.patterns),
        )
        reports: list[artifacts.Report] = []
        for artifact in chosen:
            data = github_api.download_artifact(api, artifact, max_bytes=http.max_download_bytes)
            found = artifacts.junit_reports(data, limits)
            log.info(
                "workflow run %s: artifact %r holds %d JUnit reports",
                job.run.run_id,
                artifact.name,
                len(found),
            )
            reports.extend(
                artifacts.Report(f"{artifact.name}/{report.path}", report.data) for report in found
            )
        return reports


def _gitlab_reports(
    job: PullJob, http: HttpSettings, limits: artifacts.ZipLimits
) -> list[artifacts.Report]:
    assert job.access.token is not None
    project = gitlab_api.project_ref(job.run.project_id, job.access.full_name)
    with gitlab_api.client(job.access.api_url, job.access.token, http) as api:
        try:
            report = gitlab_api.pipeline_test_report(api, project, job.run.run_id)
        except ProviderApiError as error:
            if error.status != 404:
                raise
            report = {}  # a GitLab without the test report (the jobs answer for the project)
        if report.get("test_suites"):
            log.info(
                "pipeline %s: a test report of %s tests", job.run.run_id, report.get("total_count")
            )
            return [artifacts.Report("test_report", gitlab.junit_of_test_report(report))]
        log.info("pipeline %s: no test report, reading the jobs' artifacts", job.run.run_id)
        return _gitlab_job_reports(api, project, job, http, limits)


def _gitlab_job_reports(
    api: ApiClient,
    project: str,
    job: PullJob,
    http: HttpSettings,
    limits: artifacts.ZipLimits,
) -> list[artifacts.Report]:
    """The JUnit files in the pipeline's jobs' artifacts archives: all of a
    job whose name matches the repository's globs, else those whose path in
    the archive matches them (GitLab names no archive as GitHub does)."""
    listed = gitlab_api.pipeline_jobs(api, project, job.run.run_id)
    kept = [ci_job for ci_job in listed if ci_job.archive_bytes is not None]
    log.info("pipeline %s: %d jobs, %d with artifacts", job.run.run_id, len(listed), len(kept))
    patterns = job.access.patterns
    reports: list[artifacts.Report] = []
    for ci_job in kept:
        try:
            data = gitlab_api.download_job_artifacts(
                api, project, ci_job, max_bytes=http.max_download_bytes
            )
        except ProviderApiError as error:
            if error.status != 404:
                raise
            # Expired or erased since the listing (the listing used the same token).
            log.info("pipeline %s: job %s has no artifacts any more", job.run.run_id, ci_job.id)
            continue
        whole = provider_access.name_matches(ci_job.name, patterns)
        found = artifacts.junit_reports(
            data,
            limits,
            wanted=None if whole else lambda path: provider_access.name_matches(path, patterns),
        )
        log.info(
            "pipeline %s: job %s (%r) holds %d JUnit reports",
            job.run.run_id,
            ci_job.id,
            ci_job.name,
            len(found),
        )
        reports.extend(
            artifacts.Report(f"{ci_job.name}/{report.path}", report.data) for report in found
        )
    return reports


def fetch_reports(
    job: PullJob, *, http: HttpSettings, limits: artifacts.ZipLimits
) -> list[artifacts.Report]:
    """The JUnit reports the provider holds for the job's run (step 2);
    PullFailed when it cannot bring them."""
    if job.access.token is None:
        raise PullFailed(
            f"no provider token is set for {job.access.full_name}: "
            "set one with `riskrank repo api --token-stdin`",
            retryable=False,
        )
    try:
        if job.access.provider is Provider.GITHUB:
            return _github_reports(job, http, limits)
        return _gitlab_reports(job, http, limits)
    except ProviderApiError as error:
        raise PullFailed(
            error.message, retryable=error.retryable, retry_after=error.retry_after
        ) from None
    except IngestError as error:
        raise PullFailed(error.message, retryable=False) from None


def fetch_jobs(job: PullJob, *, http: HttpSettings) -> JobsRead | None:
    """GitHub's jobs of the run's attempt and how each concluded (each job
    is a check run), best-effort: a failure, after the client's retries, is
    said in the answer's `error`, never raised, so that the reports are kept
    regardless. None: nothing to ask (GitLab, or no token)."""
    if job.access.provider is not Provider.GITHUB or job.access.token is None:
        return None
    try:
        with github_api.client(job.access.api_url, job.access.token, http) as api:
            jobs = github_api.run_jobs(api, job.access.full_name, job.run.run_id, job.run.attempt)
    except ProviderApiError as error:
        log.warning("workflow run %s: jobs not listed: %s", job.run.run_id, error.message)
        return JobsRead(None, error.message)
    except Exception as error:
        # Not foreseen: the trace in the log, the reports stored all the same.
        log.exception("workflow run %s: listing the jobs failed", job.run.run_id)
        return JobsRead(None, f"{type(error).__name__}: {error}")
    read = JobsRead(tuple(jobs))
    log.info("workflow run %s: %d jobs, %d failed", job.run.run_id, len(jobs), len(read.failed()))
    return read


def _note(reports: list[artifacts.Report], jobs: JobsRead | None) -> str | None:
    """What the handled event's error says: the jobs that could not be
    listed, or the failed jobs of a run that left no report."""
    if jobs is None:
        return None
    if jobs.error is not None:
        return f"jobs not listed (their conclusions are unknown): {jobs.error}"
    failed = jobs.failed()
    if reports or not failed:
        return None
    names = ", ".join(repr(name) for name in failed)
    return f"job{'s' if len(failed) > 1 else ''} {names} failed and left no JUnit report"


# --- step 3: storing ------------------------------------------------------------


def store_reports(
    session: Session,
    celery: Celery,
    job: PullJob,
    reports: list[artifacts.Report],
    jobs: JobsRead | None = None,
) -> EventStatus | None:
    """Store the pulled reports as runs of the commit, queue their
    ingestion, keep the jobs' conclusions, and mark the event handled
    (idempotent: a report already stored is not stored again, a handled
    event is left alone)."""
    event = session.get(CiEvent, job.event_id, with_for_update=True)
    if event is None:
        return None
    if event.status is not EventStatus.PENDING:
        return event.status
    repository = session.get_one(Repository, job.repository_id)
    created = 0
    for report in reports:
        stored = runs.store_run(
            session,
            repository=repository,
            commit_sha=job.run.sha,
            branch=job.run.branch,
            run_key=job.run.run_key,
            plan_id=None,
            source=RunSource.JUNIT,
            content_type=JUNIT_CONTENT_TYPE,
            report=report.data,
        )
        if stored.created:
            created += 1
            enqueue_after_commit(session, celery, RUNS_INGEST, stored.id)
    event.attempts += 1
    event.status = EventStatus.HANDLED
    note = _note(reports, jobs)
    event.error = note[: retry.ERROR_TEXT_LIMIT] if note else None
    event.summary = jobs.summary() if jobs is not None else None
    event.handled_at = utcnow()
    log.info(
        "event %s: %d reports pulled for %s, %d new", event.id, len(reports), job.run.sha, created
    )
    return event.status


def fail_event(session: Session, event_id: int, *, error: str) -> EventStatus | None:
    """Give up on a pull that no later try would bring (the event stays,
    with its reason)."""
    event = session.get(CiEvent, event_id, with_for_update=True)
    if event is None or event.status is not EventStatus.PENDING:
        return None if event is None else event.status
    event.attempts += 1
    event.status = EventStatus.FAILED
    event.error = error[: retry.ERROR_TEXT_LIMIT]
    event.handled_at = utcnow()
    return event.status
