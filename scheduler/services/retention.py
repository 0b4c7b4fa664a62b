"""Keeping the database from growing without bound.

What grows with every commit and every CI run, and what is kept:

- **Plans** (a row per commit and model, a payload of every test's scores,
  a plan item per test: 10,000 rows a commit for a suite of 10,000 tests).
  A plan serves its commit's builds and is evaluated when their outcomes
  come in; older than the retention, it is deleted with its items. A commit
  built again later is scored again.
- **CI events** (webhook deliveries, payload included): once handled (or
  recorded, or given up on), older than the retention, deleted. Pending
  ones are kept whatever their age: the sweeper still owes them a try.
- **Raw reports** of ingested runs (JUnit XML or JSON, often megabytes):
  their executions and statistics are what riskrank reads; the bytes go,
  the run row (and its digest, which recognises a report sent again) stays.
- **Statistics change records** (which tests each ingestion changed): a
  plan reads those written after it was scored, so they go with the plans.

Executions, per-test statistics, file-test links, commits and models are
kept: they are the history training and features read.

Deletions go in batches, each in its own transaction, so no lock is held
for long on a busy server."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.orm import Session

from scheduler.db import Database
from scheduler.models import CiEvent, EventStatus, Plan, RunStatus, StatsChange, SuiteRun
from scheduler.models.base import utcnow

log = logging.getLogger(__name__)

BATCH = 200  # plans per transaction: up to two million plan items


@dataclass(frozen=True)
class Pruned:
    plans: int
    events: int
    reports: int
    cutoff: datetime
    stats_changes: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "plans": self.plans,
            "events": self.events,
            "reports": self.reports,
            "stats_changes": self.stats_changes,
            "cutoff": self.cutoff.isoformat(),
        }


def _old_plans(cutoff: datetime) -> ColumnElement[bool]:
    return Plan.created_at < cutoff


def _old_events(cutoff: datetime) -> ColumnElement[bool]:
    return (CiEvent.status != EventStatus.PENDING) & (CiEvent.received_at < cutoff)


def _old_reports(cutoff: datetime) -> ColumnElement[bool]:
    return (
        (SuiteRun.status == RunStatus.INGESTED)
        & (SuiteRun.ingested_at < cutoff)
        & SuiteRun.report.is_not(None)
    )


def _old_changes(cutoff: datetime) -> ColumnElement[bool]:
    return StatsChange.created_at < cutoff


def count(session: Session, *, cutoff: datetime) -> Pruned:
    """What `prune` would remove, without removing it."""
    return Pruned(
        plans=session.scalar(select(func.count(Plan.id)).where(_old_plans(cutoff))) or 0,
        events=session.scalar(select(func.count(CiEvent.id)).where(_old_events(cutoff))) or 0,
        reports=session.scalar(select(func.count(SuiteRun.id)).where(_old_reports(cutoff))) or 0,
        cutoff=cutoff,
        stats_changes=session.scalar(select(func.count(StatsChange.id)).where(_old_changes(cutoff)))
        or 0,
    )


Progress = Callable[[str, int], None]  # (what, how many so far)


def _in_batches(
    database: Database, what: str, step: Callable[[Session], int], progress: Progress | None
) -> int:
    """`step` (one batch, in its own transaction) until a batch comes short."""
    total = 0
    while True:
        with database.session() as session:
            done = step(session)
        total += done
        if progress is not None:
            progress(what, total)
        if done < BATCH:
            return total


def prune(
    database: Database,
    *,
    older_than: timedelta,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> Pruned:
    """Delete the plans and handled CI events older than `older_than`, and
    drop the raw reports of runs ingested before then (see the module)."""
    cutoff = (now or utcnow()) - older_than

    def plans(session: Session) -> int:
        ids = list(
            session.scalars(
                select(Plan.id).where(_old_plans(cutoff)).order_by(Plan.id).limit(BATCH)
            )
        )
        if ids:
            session.execute(delete(Plan).where(Plan.id.in_(ids)))  # items by cascade
        return len(ids)

    def events(session: Session) -> int:
        ids = list(
            session.scalars(
                select(CiEvent.id).where(_old_events(cutoff)).order_by(CiEvent.id).limit(BATCH)
            )
        )
        if ids:
            session.execute(delete(CiEvent).where(CiEvent.id.in_(ids)))
        return len(ids)

    def reports(session: Session) -> int:
        ids = list(
            session.scalars(
                select(SuiteRun.id).where(_old_reports(cutoff)).order_by(SuiteRun.id).limit(BATCH)
            )
        )
        if ids:
            session.execute(update(SuiteRun).where(SuiteRun.id.in_(ids)).values(report=None))
        return len(ids)

    def changes(session: Session) -> int:
        ids = list(
            session.scalars(
                select(StatsChange.id)
                .where(_old_changes(cutoff))
                .order_by(StatsChange.id)
                .limit(BATCH)
            )
        )
        if ids:
            session.execute(delete(StatsChange).where(StatsChange.id.in_(ids)))
        return len(ids)

    pruned = Pruned(
        plans=_in_batches(database, "plans", plans, progress),
        events=_in_batches(database, "CI events", events, progress),
        reports=_in_batches(database, "raw reports", reports, progress),
        cutoff=cutoff,
        stats_changes=_in_batches(database, "statistics change records", changes, progress),
    )
    log.info(
        "pruned %s plans, %s CI events and %s raw reports older than %s",
        pruned.plans,
        pruned.events,
        pruned.reports,
        cutoff.isoformat(),
    )
    return pruned
