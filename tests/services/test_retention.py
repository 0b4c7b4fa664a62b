"""Pruning what is past retention: old plans go with their items, handled
CI events and ingested runs' raw reports go, and everything riskrank still
reads stays, on both backends; the CLI and the beat schedule drive it."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Select, func, select

from scheduler.config import Settings, get_settings
from scheduler.db import Database
from scheduler.models import (
    CiEvent,
    Commit,
    EventStatus,
    KnownTest,
    Plan,
    PlanItem,
    PlanStatus,
    Provider,
    RunSource,
    RunStatus,
    StatsChange,
    SuiteRun,
)
from scheduler.models.base import utcnow
from scheduler.queue import MAINTENANCE_PRUNE, create_celery
from scheduler.services import repos, retention, runs
from tests.conftest import empty_all_tables
from tests.e2e.conftest import clean_env
from tests.test_cli_outcomes import riskrank
from workers import maintenance

NOW = utcnow()
OLD = NOW - timedelta(days=120)
RECENT = NOW - timedelta(days=3)


def fill(database: Database) -> None:
    """Per kind, one row past a 90-day retention and one within it; and the
    ones kept whatever their age (a pending event, a run not ingested)."""
    with database.session() as session:
        repository = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/app")
        tests = [
            KnownTest(
                repository_id=repository.id, name=f"t{i}", first_seen_at=OLD, last_seen_at=NOW
            )
            for i in range(3)
        ]
        session.add_all(tests)
        session.flush()
        for sha, at in (("c-old", OLD), ("c-new", RECENT)):
            commit_id = runs.ensure_commit(session, repository=repository, sha=sha, branch="main")
            plan = Plan(
                repository_id=repository.id,
                commit_id=commit_id,
                status=PlanStatus.HEURISTIC,
                created_at=at,
                payload=b"payload",
            )
            session.add(plan)
            session.flush()
            session.add_all(
                PlanItem(plan_id=plan.id, test_id=test.id, probability=0.1, rank=rank, features=b"")
                for rank, test in enumerate(tests, start=1)
            )
            for status, ingested in ((RunStatus.INGESTED, at), (RunStatus.PENDING, None)):
                session.add(
                    SuiteRun(
                        repository_id=repository.id,
                        commit_id=commit_id,
                        plan_id=plan.id,
                        source=RunSource.JUNIT,
                        status=status,
                        received_at=at,
                        ingested_at=ingested,
                        report=b"<testsuite/>",
                        report_sha256=f"{sha}-{status}",
                    )
                )
        session.add_all(
            StatsChange(repository_id=repository.id, version=version, test_ids=b"", created_at=at)
            for version, at in ((1, OLD), (2, RECENT))
        )
        for number, (status, at) in enumerate(
            (
                (EventStatus.HANDLED, OLD),
                (EventStatus.IGNORED, OLD),
                (EventStatus.FAILED, OLD),
                (EventStatus.PENDING, OLD),
                (EventStatus.HANDLED, RECENT),
            )
        ):
            session.add(
                CiEvent(
                    provider=Provider.GITHUB,
                    delivery_id=f"d-{number}",
                    event="push",
                    repository_id=repository.id,
                    payload={},
                    status=status,
                    received_at=at,
                    attempts=0,
                )
            )


def counts(database: Database) -> dict[str, int]:
    with database.session() as session:

        def number(query: Select[tuple[int]]) -> int:
            return int(session.scalar(query) or 0)

        return {
            "plans": number(select(func.count(Plan.id))),
            "items": number(select(func.count(PlanItem.id))),
            "events": number(select(func.count(CiEvent.id))),
            "pending events": number(
                select(func.count(CiEvent.id)).where(CiEvent.status == EventStatus.PENDING)
            ),
            "runs": number(select(func.count(SuiteRun.id))),
            "reports": number(select(func.count(SuiteRun.id)).where(SuiteRun.report.is_not(None))),
            "commits": number(select(func.count(Commit.id))),
            "tests": number(select(func.count(KnownTest.id))),
            "stats changes": number(select(func.count(StatsChange.id))),
        }


def test_what_is_past_retention_goes_and_the_rest_stays(database: Database) -> None:
    fill(database)
    before = counts(database)
    with database.session() as session:
        would = retention.count(session, cutoff=NOW - timedelta(days=90))
    assert (would.plans, would.events, would.reports, would.stats_changes) == (1, 3, 1, 1)
    assert counts(database) == before  # counting removes nothing

    done: list[tuple[str, int]] = []
    pruned = retention.prune(
        database,
        older_than=timedelta(days=90),
        now=NOW,
        progress=lambda what, total: done.append((what, total)),
    )
    assert (pruned.plans, pruned.events, pruned.reports, pruned.stats_changes) == (1, 3, 1, 1)
    assert done == [
        ("plans", 1),
        ("CI events", 3),
        ("raw reports", 1),
        ("statistics change records", 1),
    ]
    assert counts(database) == before | {
        "plans": 1,
        "items": 3,  # the old plan's went with it
        "events": 2,  # the pending one stays whatever its age
        "reports": 3,  # the old run not ingested keeps its report
        "stats changes": 1,
    }
    with database.session() as session:
        # The old runs stay (their executions are history), their plan is gone.
        old_runs = session.scalars(select(SuiteRun).where(SuiteRun.received_at == OLD)).all()
        assert len(old_runs) == 2
        assert {run.plan_id for run in old_runs} == {None}
    # Idempotent: nothing is left to remove.
    again = retention.prune(database, older_than=timedelta(days=90), now=NOW)
    assert (again.plans, again.events, again.reports) == (0, 0, 0)


def test_batches_go_until_a_short_one(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(database)
    with database.session() as session:
        commit = session.scalars(select(Commit).where(Commit.sha == "c-old")).one()
        session.add_all(
            Plan(
                repository_id=commit.repository_id,
                commit_id=commit.id,
                status=PlanStatus.HEURISTIC,
                created_at=OLD,
            )
            for _ in range(4)
        )
    monkeypatch.setattr(retention, "BATCH", 2)
    pruned = retention.prune(database, older_than=timedelta(days=90), now=NOW)
    assert pruned.plans == 5
    assert counts(database)["plans"] == 1


def test_the_cli_prunes_or_only_counts(sqlite_url: str, tmp_path: Path) -> None:
    database = Database.from_url(sqlite_url)
    try:
        empty_all_tables(database)
        fill(database)
        env = clean_env(RISKRANK_DATABASE_URL=sqlite_url)
        command = partial(riskrank, env=env, cwd=tmp_path)
        dry = command("db", "prune", "--dry-run", "--json")
        assert dry.returncode == 0, dry.explain()
        assert json.loads(dry.stdout) | {"cutoff": None} == {
            "plans": 1,
            "events": 3,
            "reports": 1,
            "stats_changes": 1,
            "cutoff": None,
            "dry_run": True,
        }
        assert counts(database)["plans"] == 2
        kept = command("db", "prune", "--older-than", "365")
        assert kept.returncode == 0, kept.explain()
        assert "removed 0 plans (with their items), 0 CI events and 0 raw reports" in kept.stdout
        assert kept.stderr == ""  # no line: shorter than 30 s
        # Without a terminal, what it has removed so far, a line a step at
        # most (here every step: RISKRANK_PROGRESS_SECONDS=0), on stderr.
        done = command("db", "prune", env=env | {"RISKRANK_PROGRESS_SECONDS": "0"})
        assert done.returncode == 0, done.explain()
        assert "removed 1 plans (with their items), 3 CI events and 1 raw reports" in done.stdout
        assert re.sub(r", \d+ s$", ", N s", done.stderr, flags=re.M).splitlines() == [
            "pruning: plans: 1 so far, N s",
            "pruning: CI events: 3 so far, N s",
            "pruning: raw reports: 1 so far, N s",
            "pruning: statistics change records: 1 so far, N s",
        ]
        assert counts(database)["plans"] == 1
        refused = command("db", "prune", "--older-than", "0")
        assert refused.returncode == 1
        assert "a retention of 0 days keeps everything" in refused.stderr
    finally:
        database.dispose()


def test_beat_prunes_on_its_schedule() -> None:
    settings = Settings(prune_interval_seconds=1800, broker_url="memory://")
    schedule = create_celery(settings).conf.beat_schedule
    assert schedule["prune-past-retention"] == {"task": MAINTENANCE_PRUNE, "schedule": 1800}


def test_the_worker_task_prunes_with_the_configured_retention(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database.from_url(sqlite_url)
    try:
        empty_all_tables(database)
        fill(database)
        monkeypatch.setenv("RISKRANK_DATABASE_URL", sqlite_url)
        monkeypatch.setenv("RISKRANK_RETENTION_DAYS", "0")
        get_settings.cache_clear()
        assert maintenance.prune() is None  # 0 keeps everything
        assert counts(database)["plans"] == 2
        monkeypatch.setenv("RISKRANK_RETENTION_DAYS", "30")
        get_settings.cache_clear()
        pruned = maintenance.prune()
        assert pruned is not None
        assert (pruned["plans"], pruned["events"], pruned["reports"]) == (1, 3, 1)
        assert counts(database)["plans"] == 1
    finally:
        get_settings.cache_clear()
        database.dispose()
