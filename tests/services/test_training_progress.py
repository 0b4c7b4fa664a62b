"""Training tells a watcher the step it is at (`riskrank train` shows it)."""

from __future__ import annotations

from scheduler.db import Database
from scheduler.services import training
from tests.services.test_training import dune

__all__ = ["dune"]  # the fixture, shared


def test_training_reports_each_step(database: Database, dune: int) -> None:
    steps: list[str] = []
    with database.session() as session:
        outcome = training.train_repository(session, repository_id=dune, progress=steps.append)
        assert outcome is not None
        rows = outcome.model.train_rows
        scorer = outcome.model.metrics["scorer"]["name"]
    assert steps == [
        "loading the history",
        "replaying 120 builds",
        f"choosing a scorer on {rows:,} rows",
        f"training {scorer}",
        "comparing with the active model",
    ]
    assert len(steps) == training.STEPS  # what `riskrank train`'s bar counts
