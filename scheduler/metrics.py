"""Every Prometheus metric riskrank exports, in one place.

api, worker and beat are separate processes: when PROMETHEUS_MULTIPROC_DIR is
set (``riskrank up`` and the compose file set it), each writes its samples
there and ``/metrics`` adds them up."""

from __future__ import annotations

import os

_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _MULTIPROC_DIR:
    # Each metric opens its file there as it is created, i.e. at import.
    os.makedirs(_MULTIPROC_DIR, exist_ok=True)

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

WEBHOOKS_RECEIVED = Counter(
    "riskrank_webhooks_received_total",
    "Webhook deliveries by provider and what became of them.",
    ["provider", "result"],  # result: accepted, duplicate, ignored, rejected
)
WEBHOOK_SECONDS = Histogram(
    "riskrank_webhook_seconds",
    "Time to verify, store and queue one webhook delivery.",
    ["provider"],
)
TASKS_PUBLISH_FAILED = Counter(
    "riskrank_tasks_publish_failed_total",
    "Tasks that could not be handed to the broker (the sweeper queues them later).",
    ["task"],
)
EVENTS_PROCESSED = Counter(
    "riskrank_events_processed_total",
    "CI event deliveries to a worker, by the event's status afterwards.",
    ["result"],  # handled, ignored, failed, error (retried later), missing
)
EVENTS_REQUEUED = Counter(
    "riskrank_events_requeued_total",
    "Stored but unhandled events the sweeper queued again.",
)
PLANS_SERVED = Counter(
    "riskrank_plans_served_total",
    "Plans answered by the plan API, by the answer's status.",
    ["status"],  # ready, heuristic, fallback
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

CONTENT_TYPE = CONTENT_TYPE_LATEST


def render() -> bytes:
    """The exposition text for /metrics, across processes when configured."""
    if _MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()
