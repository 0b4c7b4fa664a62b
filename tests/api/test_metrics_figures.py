"""The figures /metrics reads from the database when scraped (PostgreSQL and
SQLite), their cache, and /metrics with the database down."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from scheduler import metrics
from scheduler.api.app import create_app
from scheduler.config import Settings
from scheduler.db import Database
from scheduler.models import (
    CiEvent,
    Commit,
    EventStatus,
    KnownTest,
    KnownTestStats,
    ModelStatus,
    Provider,
    RiskModel,
    RunSource,
    RunStatus,
    SuiteRun,
)
from scheduler.models.base import utcnow
from scheduler.services import repos
from tests.helpers import metric_key as key
from tests.helpers import metric_samples as samples


def _model(repository_id: int, version: int, status: ModelStatus, apfd: float) -> RiskModel:
    return RiskModel(
        repository_id=repository_id,
        version=version,
        status=status,
        model_text="",
        feature_names=[],
        params={},
        metrics={
            "candidate": {"mean_apfd": apfd, "auc": 0.7, "log_loss": 0.25},
            "calibration": {"method": "isotonic", "ece": apfd / 100},
            "heuristic_calibration": {"method": "platt", "ece": apfd / 50},
        },
        created_at=utcnow() - timedelta(hours=3 - version),
        promoted_at=utcnow() if status is ModelStatus.ACTIVE else None,
    )


def _tests(session: Session, repository_id: int) -> None:
    """Three tests: one flaky, one steady, one no longer active."""
    for number, (active, flaky_runs) in enumerate([(True, 2), (True, 0), (False, 1)]):
        test = KnownTest(repository_id=repository_id, name=f"t::{number}", is_active=active)
        session.add(test)
        session.flush()
        session.add(KnownTestStats(test_id=test.id, flaky_runs=flaky_runs))


def _fill(database: Database) -> None:
    now = utcnow()
    with database.session() as session:
        one = repos.add_repository(session, provider=Provider.GITHUB, full_name="Acme/One")
        two = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/two")
        session.flush()
        two.trimming = {
            "builds": 100,
            "miss_rate": 0.25,
            "miss_rate_low": 0.125,
            "miss_rate_high": 0.5,
            "ceiling": 0.1,
            "escalation": "trimming let through too much; calibration error 0.050 …",
            "escalated_by": ["miss_rate", "calibration"],
            "calibration_error": 0.05,
            "calibration_error_low": 0.03,
            "calibration_builds": 40,
            "calibration_ceiling": 0.02,
            "expansion_share": 0.03,
            "expanded_builds": 4,
            "confidence_scale": 1.5,
        }
        one.trimming = {"builds": 3, "escalation": None}  # kept before the causes were
        session.add(_model(two.id, 1, ModelStatus.RETIRED, 0.5))
        _tests(session, one.id)
        session.add_all(
            [
                _model(one.id, 1, ModelStatus.RETIRED, 0.6),
                _model(one.id, 2, ModelStatus.ACTIVE, 0.8),
            ]
        )
        for number, (status, age) in enumerate(
            [(EventStatus.PENDING, 90), (EventStatus.PENDING, 5), (EventStatus.FAILED, 500)]
        ):
            session.add(
                CiEvent(
                    provider=Provider.GITHUB,
                    delivery_id=f"d{number}",
                    event="push",
                    repository_id=one.id,
                    payload={},
                    status=status,
                    received_at=now - timedelta(seconds=age),
                )
            )
        commit = Commit(repository_id=one.id, sha="a" * 40)
        session.add(commit)
        session.flush()
        session.add(
            SuiteRun(
                repository_id=one.id,
                commit_id=commit.id,
                source=RunSource.JUNIT,
                status=RunStatus.PENDING,
                received_at=now - timedelta(seconds=30),
            )
        )


def test_the_database_figures_on_metrics(settings: Settings, database: Database) -> None:
    _fill(database)
    with TestClient(create_app(settings)) as client:
        exported = samples(client.get("/metrics").text)

    def figure(series: str) -> float:
        return exported[key(series)]

    one, two = 'repository="acme/one"', 'repository="acme/two"'
    assert figure("riskrank_database_figures_up") == 1
    assert figure("riskrank_repositories") == 2
    assert figure("riskrank_events_waiting") == 2
    assert 90 <= figure("riskrank_events_oldest_waiting_seconds") < 150
    assert figure("riskrank_events_failed") == 1
    assert figure("riskrank_runs_waiting") == 1
    assert 30 <= figure("riskrank_runs_oldest_waiting_seconds") < 90
    assert figure(f"riskrank_tests{{{one}}}") == 2  # the inactive one left out
    assert figure(f"riskrank_flaky_tests{{{one}}}") == 1
    assert figure(f"riskrank_tests{{{two}}}") == 0
    assert figure(f"riskrank_model_active_version{{{one}}}") == 2
    assert figure(f"riskrank_model_active_version{{{two}}}") == 0
    assert figure(f"riskrank_model_validation_apfd{{{one}}}") == 0.8  # the active one's
    assert figure(f"riskrank_model_validation_auc{{{one}}}") == 0.7
    assert figure(f'riskrank_models{{{one},status="retired"}}') == 1
    assert key(f"riskrank_model_validation_apfd{{{two}}}") not in exported
    # The active model's calibration error; without one, the heuristic's
    # calibration of the newest training.
    assert figure(f"riskrank_model_calibration_error{{{one}}}") == 0.008
    assert figure(f"riskrank_model_calibration_error{{{two}}}") == 0.01
    # The live estimate of what trimming misses, as plan evaluation left it.
    assert figure(f"riskrank_trimming_miss_rate{{{two}}}") == 0.25
    assert figure(f"riskrank_trimming_miss_rate_low{{{two}}}") == 0.125
    assert figure(f"riskrank_trimming_miss_rate_high{{{two}}}") == 0.5
    assert figure(f"riskrank_trimming_miss_ceiling{{{two}}}") == 0.1
    assert figure(f"riskrank_trimming_window_builds{{{two}}}") == 100
    assert figure(f"riskrank_trimming_escalated{{{two}}}") == 1
    assert figure(f"riskrank_trimming_escalated{{{one}}}") == 0
    # Why, per cause; the calibration error of what the plans served.
    for cause, (for_one, for_two) in {"miss_rate": (0, 1), "calibration": (0, 1)}.items():
        assert figure(f'riskrank_trimming_escalated_by{{cause="{cause}",{one}}}') == for_one
        assert figure(f'riskrank_trimming_escalated_by{{cause="{cause}",{two}}}') == for_two
    assert figure(f"riskrank_trimming_calibration_error{{{two}}}") == 0.05
    assert figure(f"riskrank_trimming_calibration_error_low{{{two}}}") == 0.03
    assert figure(f"riskrank_trimming_calibration_builds{{{two}}}") == 40
    assert figure(f"riskrank_trimming_calibration_ceiling{{{two}}}") == 0.02
    # What expanded builds ran, paid out of the budget of the plans after them.
    assert figure(f"riskrank_trimming_expansion_share{{{two}}}") == 0.03
    assert figure(f"riskrank_trimming_expanded_builds{{{two}}}") == 4
    # How far confidence plans may go past their 1 - t.
    assert figure(f"riskrank_trimming_confidence_scale{{{two}}}") == 1.5
    assert key(f"riskrank_trimming_calibration_error{{{one}}}") not in exported
    assert key(f"riskrank_trimming_miss_rate{{{one}}}") not in exported
    trained = figure(f"riskrank_model_last_training_timestamp_seconds{{{one}}}")
    assert abs(trained - (utcnow() - timedelta(hours=1)).timestamp()) < 60  # the newest model


def test_metrics_answer_without_the_database(redis_url: str) -> None:
    settings = Settings(
        database_url="postgresql+psycopg://127.0.0.1:1/nothing?connect_timeout=1",
        broker_url=redis_url,
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    exported = samples(response.text)
    assert exported["riskrank_database_figures_up"] == 0
    assert "riskrank_events_waiting" not in exported
    assert "riskrank_rate_limited_total" in exported  # the events are still served


def test_figures_are_read_at_most_once_per_ttl() -> None:
    reads: list[int] = []

    def read() -> list[metrics.Figure]:
        reads.append(1)
        figure = metrics.Figure("riskrank_reads", "Reads so far.")
        figure.add(len(reads))
        return [figure]

    cached = metrics.DatabaseFigures(read, ttl=60)
    first, second = metrics.render(cached), metrics.render(cached)
    assert b"riskrank_reads 1.0" in first
    assert b"riskrank_reads 1.0" in second
    assert len(reads) == 1
    uncached = metrics.DatabaseFigures(read, ttl=0)
    metrics.render(uncached)
    assert b"riskrank_reads 3.0" in metrics.render(uncached)
