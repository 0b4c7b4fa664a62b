"""Every Prometheus metric riskrank exports, in one place.

Two kinds, each counted where it can be counted correctly with several api
processes and several workers on several machines:

- **Events** (a webhook answered, a task run, a report ingested, a plan
  evaluated, a training) are counters and histograms of the process that
  saw them. With PROMETHEUS_MULTIPROC_DIR set (``riskrank up`` and the
  compose file set it) each process writes its samples to a file there;
  whoever serves them adds the files up. The api's ``/metrics`` serves its
  own directory (every uvicorn process, and any admin command run beside
  them with the same directory: ``docker compose exec api riskrank models
  rollback`` is counted). Each worker serves its own directory on its own
  port (RISKRANK_WORKER_METRICS_PORT; Prometheus finds every replica by
  DNS): a worker may run on another machine, where no directory is shared,
  and pid-named files of containers in one volume would collide. Under
  ``riskrank up`` the worker shares the api's directory and serves nothing.
  An event is counted once its transaction committed (``after_commit``), so
  a rolled-back or redelivered task does not count twice.
- **State** (what waits, the active models and their quality, flaky tests)
  lives in the database: the api reads it when scraped, with one cheap
  query per figure, cached a few seconds (``DatabaseFigures``). Only the
  api exports it, so it is the same whichever api process answers and is
  never summed over workers.

Labels are few and bounded: a provider, a result, a task name, an outcome,
and a repository (``owner/name``, lowercase); never a commit or a test."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _MULTIPROC_DIR:
    # Each metric opens its file there as it is created, i.e. at import.
    os.makedirs(_MULTIPROC_DIR, exist_ok=True)

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric  # noqa: E402
from sqlalchemy import event, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

# --- the api --------------------------------------------------------------------

WEBHOOKS_RECEIVED = Counter(
    "riskrank_webhooks_received_total",
    "Webhook deliveries by provider and what became of them.",
    ["provider", "result"],  # queued, recorded, duplicate, ignored, rejected
)
WEBHOOK_SECONDS = Histogram(
    "riskrank_webhook_seconds",
    "Time to verify, store and queue one webhook delivery.",
    ["provider"],
)
HTTP_REQUESTS = Counter(
    "riskrank_http_requests_total",
    "HTTP requests answered by the api, by route (its template) and status code.",
    ["route", "code"],
)
TASKS_PUBLISH_FAILED = Counter(
    "riskrank_tasks_publish_failed_total",
    "Tasks that could not be handed to the broker (the sweeper queues them later).",
    ["task"],
)
RUNS_RECEIVED = Counter(
    "riskrank_runs_received_total",
    "Test reports received by the results API, by repository and result.",
    ["repository", "result"],  # queued, duplicate
)
PLANS_SERVED = Counter(
    "riskrank_plans_served_total",
    "Plans answered by the plan API, by the answer's status.",
    ["status"],  # ready, heuristic, fallback, no_tests
)
PLAN_SECONDS = Histogram(
    "riskrank_plan_seconds",
    "Time to plan and encode one plan answer (scoring inline included).",
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RATE_LIMITED = Counter(
    "riskrank_rate_limited_total",
    "API requests refused with 429: their token was over its rate limit.",
)

# --- the workers -----------------------------------------------------------------

EVENTS_PROCESSED = Counter(
    "riskrank_events_processed_total",
    "CI event deliveries to a worker, by the event's status afterwards.",
    ["result"],  # handled, ignored, failed, error (retried later), missing
)
EVENTS_REQUEUED = Counter(
    "riskrank_events_requeued_total",
    "Stored but unhandled events the sweeper queued again.",
)
RESULTS_PULLED = Counter(
    "riskrank_results_pulled_total",
    "Pulls of a finished CI run's test reports from the provider's API, by outcome.",
    ["provider", "result"],  # handled, retry (kept for the sweeper), failed
)
REPORTS_PULLED = Counter(
    "riskrank_reports_pulled_total",
    "JUnit reports pulled from the providers (stored once: a report pulled again counts again).",
    ["provider"],
)
CHANGES_FETCHED = Counter(
    "riskrank_changes_fetched_total",
    "Changed files asked of the provider's API (pull requests, incomplete pushes), by outcome.",
    # fetched; retry (asked again later); failed (the event handled with its payload's files)
    ["provider", "result"],
)
COMMIT_STATUSES = Counter(
    "riskrank_commit_statuses_total",
    "Commit statuses posted to the providers, by outcome.",
    ["provider", "result"],  # posted, failed
)
TASK_SECONDS = Histogram(
    "riskrank_task_seconds",
    "Celery task runs by task name and outcome, and how long each took "
    "(its _count is the number of runs).",
    ["task", "outcome"],  # success, failure, retry
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0),
)
RUNS_INGESTED = Counter(
    "riskrank_runs_ingested_total",
    "Test reports whose ingestion ended, by repository and result.",
    ["repository", "result"],  # ingested, failed
)
EXECUTIONS_INGESTED = Counter(
    "riskrank_executions_ingested_total",
    "Test executions (one per test and attempt) written by ingestion.",
    ["repository"],
)
# Plan evaluations: counted when the outcomes of a build that followed a
# plan come in, once per plan however many shards report (each report adds
# what it changed in the plan's evaluation).
PLANS_EVALUATED = Counter(
    "riskrank_plans_evaluated_total",
    "Plans whose outcomes came back (the builds that followed a plan).",
    ["repository"],
)
TESTS_SELECTED = Counter(
    "riskrank_tests_selected_total",
    "Tests the followed plans selected to run (exploration sample included).",
    ["repository"],
)
TESTS_DROPPED = Counter(
    "riskrank_tests_dropped_total",
    "Tests the followed plans dropped.",
    ["repository"],
)
SECONDS_SAVED = Counter(
    "riskrank_ci_seconds_saved_total",
    "Estimated CI seconds saved: the expected durations (the plan's, when "
    "scored) of the tests the followed plans dropped.",
    ["repository"],
)
FAILURES_CAUGHT = Counter(
    "riskrank_failures_caught_total",
    "Failing tests the followed plans had selected.",
    ["repository"],
)
FAILURES_MISSED = Counter(
    "riskrank_failures_missed_total",
    "Failing tests the followed plans had dropped, seen because they ran anyway.",
    ["repository"],
)
FAILURES_MISSED_ESTIMATED = Counter(
    "riskrank_failures_missed_estimated_total",
    "Failures the budget let through, estimated from the exploration sample "
    "(Horvitz-Thompson: a failure kept with probability p stands for (1 - p)/p "
    "missed). Miss rate: its rate over itself plus failures caught.",
    ["repository"],
)
TRAININGS = Counter(
    "riskrank_trainings_total",
    "Trainings by repository and outcome.",
    ["repository", "outcome"],  # promoted, kept (a candidate), failed
)
TRAINING_SECONDS = Histogram(
    "riskrank_training_seconds",
    "How long one training took (replay, training, comparison), by outcome.",
    ["outcome"],
    buckets=(0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
)
PROMOTIONS = Counter(
    "riskrank_model_promotions_total",
    "Models made active, by who: a training ahead of the active model, or an operator.",
    ["by"],  # training, operator
)
ROLLBACKS = Counter(
    "riskrank_model_rollbacks_total",
    "Rollbacks to the model active before the current one.",
)
RETIREMENTS = Counter(
    "riskrank_model_retirements_total",
    "Active models a training retired: the heuristic was ahead of them on the builds "
    "since their own training.",
)
for _by in ("training", "operator"):
    PROMOTIONS.labels(by=_by)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Increment(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class Observe(Protocol):
    def observe(self, amount: float) -> None: ...


# --- counting once the transaction committed --------------------------------------

_PENDING_KEY = "riskrank_pending_metrics"


def after_commit(session: Session, metric: Increment, amount: float = 1.0) -> None:
    """Count `amount` on `metric` once `session` commits; nothing if it
    rolls back (the work will be done, and counted, again)."""
    if amount:
        session.info.setdefault(_PENDING_KEY, []).append(lambda: metric.inc(amount))


def observe_after_commit(session: Session, histogram: Observe, value: float) -> None:
    """`after_commit` for a histogram's observation."""
    session.info.setdefault(_PENDING_KEY, []).append(lambda: histogram.observe(value))


@event.listens_for(Session, "after_commit")
def _count_pending(session: Session) -> None:
    for action in session.info.pop(_PENDING_KEY, []):
        action()


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, previous_transaction: Any) -> None:
    if not previous_transaction.nested:
        session.info.pop(_PENDING_KEY, None)


def repository_label(session: Session, repository_id: int) -> str:
    """The repository label of a repository id (its lowercase owner/name).
    Read each time, not remembered: one primary-key read beside a task's
    work, and SQLite gives a removed repository's id to the next one."""
    from scheduler.models import Repository

    slug = session.scalar(select(Repository.slug).where(Repository.id == repository_id))
    return slug if slug is not None else "unknown"


# --- figures read from the database at scrape time -------------------------------

Sample = tuple[dict[str, str], float]


class Figure:
    """One gauge read from the database: its name, help, label names and samples."""

    def __init__(self, name: str, documentation: str, labels: Iterable[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self.samples: list[Sample] = []

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((labels, float(value)))

    def family(self) -> Metric:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, value in self.samples:
            family.add_metric([labels[name] for name in self.labels], value)
        return family


class DatabaseFigures:
    """A collector of the figures `read()` returns, read at most every
    `ttl` seconds (Prometheus and a person's browser may scrape at once)
    and by one thread at a time. When the read fails, the figures are left
    out and `riskrank_database_figures_up` is 0."""

    def __init__(self, read: Callable[[], list[Figure]], *, ttl: float = 5.0) -> None:
        self._read = read
        self._ttl = ttl
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._figures: list[Figure] = []
        self._up = 0.0
        self._seconds = 0.0

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._at < self._ttl:
                return
            started = time.perf_counter()
            try:
                self._figures, self._up = self._read(), 1.0
            except Exception:
                self._figures, self._up = [], 0.0
            self._seconds = time.perf_counter() - started
            self._at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        self._refresh()
        for figure in self._figures:
            yield figure.family()
        yield GaugeMetricFamily(
            "riskrank_database_figures_up",
            "1 when the figures read from the database at the last scrape were read.",
            value=self._up,
        )
        yield GaugeMetricFamily(
            "riskrank_database_figures_read_seconds",
            "How long reading the database's figures took at the last read.",
            value=self._seconds,
        )


# --- exposition --------------------------------------------------------------------


def process_registry() -> CollectorRegistry:
    """The events of the processes that share this process's directory
    (just this process's, without one)."""
    if _MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def render(figures: DatabaseFigures | None = None) -> bytes:
    """The exposition text for /metrics: the events, across processes when
    configured, and the database's figures when given."""
    text = generate_latest(process_registry())
    if figures is not None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(figures)
        text += generate_latest(registry)
    return text


def serve_worker_metrics(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104
    """Serve this worker's events (its own directory: every pool process)
    on `port`, on a thread of the calling process, for Prometheus."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=host, registry=process_registry())
