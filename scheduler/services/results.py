"""Receiving a run's outcomes over HTTP: authorise, check, store, queue."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from sqlalchemy.orm import Session

from scheduler import commit_ids, limits
from scheduler.ingest.errors import MalformedPayload
from scheduler.ingest.json_results import case_results, parse_run_json
from scheduler.ingest.junit import parse_junit
from scheduler.ingest.payload import decode_content, media_type
from scheduler.ingest.results import storable_results
from scheduler.models import Repository, RunSource
from scheduler.queue import RUNS_INGEST, enqueue_after_commit
from scheduler.services import runs

XML_TYPES = ("application/xml", "text/xml", "application/junit+xml")
JSON_TYPES = ("application/json",)


@dataclass(frozen=True)
class RunReceipt:
    run_id: int
    created: bool
    tests: int  # distinct tests in the report


@dataclass(frozen=True)
class RunParameters:
    """What the query string may say (for XML, the only place to say it)."""

    commit: str | None = None
    branch: str | None = None
    run_key: str | None = None
    plan_id: int | None = None


def _check_commit(commit: str | None) -> str:
    if not commit:
        raise MalformedPayload("the commit is required: ?commit=<sha> (or the JSON field 'commit')")
    return commit_ids.parse(commit)


def receive_run(
    session: Session,
    celery: Celery,
    *,
    repository_id: int,
    content_type: str | None,
    content_encoding: str | None,
    body: bytes,
    parameters: RunParameters,
    max_bytes: int,
) -> RunReceipt:
    """Check a report fully, then store it and queue its ingestion; raise a
    ClientError (before anything is written) for one that must be refused.
    The caller has authorised the request (tokens.authorize)."""
    # Nothing is read before the report is parsed: on SQLite the first
    # statement takes the database's write lock, and a report of 100,000
    # tests takes seconds to parse.
    report = decode_content(body, content_encoding, max_bytes=max_bytes)
    kind = media_type(content_type)
    if kind in XML_TYPES or kind.endswith("+xml"):
        results = storable_results(parse_junit(report, max_bytes=max_bytes), "testcase")
        tests = len({result.test for result in results})
        source = RunSource.JUNIT
        fields = parameters
    elif kind in JSON_TYPES:
        run = parse_run_json(report)
        tests = len(
            {result.test for result in storable_results(case_results(run.results), "results")}
        )
        source = RunSource.PYTEST if run.source == "pytest" else RunSource.JSON
        fields = RunParameters(
            commit=run.commit or parameters.commit,
            branch=run.branch or parameters.branch,
            run_key=run.run_key or parameters.run_key,
            plan_id=run.plan_id if run.plan_id is not None else parameters.plan_id,
        )
    else:
        raise MalformedPayload(
            f"Content-Type {content_type!r} is not a report: send JUnit XML as "
            "application/xml or results as application/json"
        )
    commit = _check_commit(fields.commit)
    if fields.plan_id is not None:
        limits.integer(fields.plan_id, "plan_id", minimum=1, maximum=limits.INT64_MAX)
    stored = runs.store_run(
        session,
        repository=session.get_one(Repository, repository_id),
        commit_sha=commit,
        branch=limits.optional_text(fields.branch, "branch", max_chars=limits.NAME_CHARS),
        run_key=limits.optional_text(fields.run_key, "run_key", max_chars=limits.NAME_CHARS),
        plan_id=fields.plan_id,
        source=source,
        content_type=limits.text(kind, "Content-Type", max_chars=limits.NAME_CHARS),
        report=report,
    )
    if stored.created:
        enqueue_after_commit(session, celery, RUNS_INGEST, stored.id)
    return RunReceipt(run_id=stored.id, created=stored.created, tests=tests)
