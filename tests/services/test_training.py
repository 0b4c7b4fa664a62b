"""Training on a replayed history and the model registry, on both backends."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from scheduler.db import Database
from scheduler.ingest.history import read_history
from scheduler.models import ModelStatus, Plan, Provider, RiskModel
from scheduler.risk import choice, replay
from scheduler.risk.features import FEATURE_NAMES
from scheduler.services import history, repos, training
from scheduler.services.builds import load_builds
from tests.services.test_promotion import (
    Fails,
    alternating,
    import_builds,
    interval,
    new_repository,
    steady,
)


@pytest.fixture
def dune(database: Database, shared_dir: Path) -> int:
    path = shared_dir / "datasets" / "dune-common" / "dune-total" / "features-engineered.csv.gz"
    reports = list(itertools.islice(read_history(path), 120))
    with database.session() as session:
        repository_id = repos.add_repository(
            session, provider=Provider.GENERIC, full_name="dune/total"
        ).id
    history.import_history(database, repository_id=repository_id, reports=reports)
    return repository_id


def statuses(database: Database, repository_id: int) -> dict[int, ModelStatus]:
    with database.session() as session:
        return dict(
            (version, status)
            for version, status in session.execute(
                select(RiskModel.version, RiskModel.status).where(
                    RiskModel.repository_id == repository_id
                )
            )
        )


@pytest.mark.parametrize(
    ("fails", "builds", "promoted", "compared"),
    [
        # A model learns the flip the heuristic always gets wrong: ahead.
        pytest.param(alternating, 100, True, 20, id="ahead"),
        # The heuristic's order is already the best: at most a tie, refused.
        pytest.param(steady, 40, False, 8, id="tied"),
    ],
)
def test_training_records_a_model_with_its_comparison(
    database: Database,
    tmp_path: Path,
    fails: Fails,
    builds: int,
    promoted: bool,
    compared: int,
) -> None:
    """Histories written so that the decision is known in advance
    (tests/services/test_promotion.py): the first model against the
    heuristic on the held-out builds."""
    repository_id = new_repository(database, "acme/app")
    import_builds(database, tmp_path, repository_id, 0, builds, fails)
    with database.session() as session:
        outcome = training.train_repository(session, repository_id=repository_id)
        assert outcome is not None
        record = outcome.model
        metrics = record.metrics
        assert record.version == 1
        assert record.train_rows > 0
        assert 0 < record.train_failures < record.train_rows
        assert record.model_text.startswith("tree")
        assert set(metrics) >= {"candidate", "heuristic", "importance", "decision"}
        assert metrics["active"] is None
    # Active only when ahead of the heuristic on the held-out builds: the
    # lower bound of the paired interval above 0.
    comparison = metrics["comparison"]
    assert outcome.promoted is promoted
    assert comparison["against"] == "heuristic"
    assert comparison["builds"] == metrics["candidate"]["failing_builds"] == compared
    if promoted:
        assert comparison["low"] > 0
        assert outcome.reason == f"ahead of the heuristic: {interval(comparison, compared)}"
    else:
        assert comparison["low"] == comparison["high"] == comparison["mean_difference"] == 0.0
        assert outcome.reason == f"not ahead of the heuristic: {interval(comparison, compared)}"
    assert metrics["decision"] == outcome.reason
    # How its plans break ties, chosen on every build with the
    # heuristic's scores (scheduler.risk.choice.choose_tie).
    tie = metrics["tie"]
    means = tie["mean_apfd"]
    assert tie["failing_builds"] > 0
    assert tie["younger_first"] is (means["first seen first"] <= means["younger first"])
    assert metrics["candidate"]["mean_apfd"] - metrics["heuristic"]["mean_apfd"] == pytest.approx(
        comparison["mean_difference"]
    )
    # Beside it, the simple orderings on the same builds, the best named.
    assert set(metrics["heuristics"]) == {
        "recently failed first",
        "failure rate",
        "failure rate, last 5",
        "riskrank heuristic",
    }
    assert metrics["heuristics"]["riskrank heuristic"] == metrics["heuristic"]
    best = metrics["best_heuristic"]
    assert metrics["heuristics"][best]["mean_apfd"] == max(
        figures["mean_apfd"] for figures in metrics["heuristics"].values()
    )
    assert statuses(database, repository_id) == {
        1: ModelStatus.ACTIVE if promoted else ModelStatus.CANDIDATE
    }
    # Its map to probabilities and the heuristic's, learnt on the held-out
    # builds, each with its error on the newer half of them.
    for key in ("calibration", "heuristic_calibration"):
        stored = metrics[key]
        assert stored["method"] in ("isotonic", "platt")
        assert stored["builds"] == metrics["ranges"]["held_out"]["builds"]
        assert 0 <= stored["ece"] < 0.05
        assert len(stored["reliability"]["rows"]) == 10
    assert training.summary(record)["calibration"]["ece"] == metrics["calibration"]["ece"]


def test_same_history_gives_the_same_model(database: Database, dune: int) -> None:
    with database.session() as session:
        first = training.train_repository(session, repository_id=dune)
        second = training.train_repository(session, repository_id=dune)
        assert first is not None
        assert second is not None
        assert first.model.model_text == second.model.model_text
        assert second.model.version == 2


def test_promote_and_rollback(database: Database, dune: int) -> None:
    with database.session() as session:
        for _ in range(2):
            training.train_repository(session, repository_id=dune)
    with database.session() as session:
        training.promote(session, repository_id=dune, version=1)
    with database.session() as session:
        training.promote(session, repository_id=dune, version=2)
    assert statuses(database, dune) == {1: ModelStatus.RETIRED, 2: ModelStatus.ACTIVE}
    with database.session() as session:
        assert training.rollback(session, repository_id=dune).version == 1
    assert statuses(database, dune) == {1: ModelStatus.ACTIVE, 2: ModelStatus.RETIRED}
    with database.session() as session, pytest.raises(training.RegistryError):
        training.rollback(session, repository_id=dune)
    with database.session() as session, pytest.raises(training.RegistryError):
        training.promote(session, repository_id=dune, version=9)


def test_training_without_history_says_why(database: Database) -> None:
    with database.session() as session:
        repository_id = repos.add_repository(
            session, provider=Provider.GITHUB, full_name="acme/empty"
        ).id
    with (
        database.session() as session,
        pytest.raises(training.TrainingError, match="no test outcomes"),
    ):
        training.train_repository(session, repository_id=repository_id)


def test_repositories_are_due_after_enough_new_reports(database: Database, dune: int) -> None:
    with database.session() as session:
        assert training.repositories_due(session, every_runs=50, every_hours=24) == [dune]
        assert training.repositories_due(session, every_runs=500, every_hours=24) == []
        training.train_repository(session, repository_id=dune)
    with database.session() as session:
        # Nothing new since the model.
        assert training.repositories_due(session, every_runs=1, every_hours=0.0001) == []


def test_an_active_model_that_keeps_its_place_is_calibrated_again() -> None:
    """A training whose candidate is not promoted learns the active model's
    map again on the builds since its training: its probabilities follow
    the repository's recent outcomes between models."""
    rng = np.random.default_rng(3)
    builds = np.repeat(np.arange(20), 500)
    truth = rng.beta(0.3, 10.0, builds.size)
    scores = np.sqrt(truth)  # ordered as the truth, not a probability
    failed = rng.random(builds.size) < truth
    features = np.zeros((builds.size, len(FEATURE_NAMES)), dtype=np.float32)
    features[:10, FEATURE_NAMES.index("is_new")] = 1.0  # new tests: not learnt from
    record = RiskModel(metrics={"decision": "kept", "calibration": None})
    training._refresh_calibration(record, scores, failed, builds, features)
    stored = record.metrics["calibration"]
    assert record.metrics["decision"] == "kept"
    assert "calibration_refreshed_at" in record.metrics
    assert stored["rows"] == builds.size - 10
    assert stored["builds"] == 20
    assert stored["ece"] < 0.01


def test_rows_of_the_exploration_sample_are_weighted_by_their_inverse_propensity(
    database: Database,
) -> None:
    """Plans whose decision drew one test into the exploration sample (p =
    0.25), their runs ingested: training reads that back from the plans'
    records and weighs the test's rows 4 to 1, self-normalised."""
    from tests.services.test_plan_evaluation import post
    from tests.services.test_recalibration import TESTS, fails, make_plans

    plan_ids = make_plans(database, 24)
    for number, plan_id in enumerate(plan_ids):
        ran = [
            (name, "failed" if fails(test, number) else "passed")
            for test, name in enumerate(TESTS[:9])  # the dropped one did not run
        ]
        post(database, plan_id, ran, run_key=f"b{number}", sha=f"{number + 1:040x}")
    with database.session() as session:
        repository_id = session.scalars(select(Plan.repository_id)).first()
        assert repository_id is not None
        builds = load_builds(session, repository_id=repository_id)
    assert len(builds) == 24
    assert all(build.selection == {TESTS[8]: 0.25} for build in builds)
    # 9 rows a build, the explored one (last by name) 4 times: 12 to spread over 9.
    weights = replay.selection_weights(builds)
    assert weights.size == 24 * 9
    np.testing.assert_allclose(weights, np.tile([0.75] * 8 + [3.0], 24))
    assert weights.sum() == pytest.approx(weights.size)

    with database.session() as session:
        outcome = training.train(session, repository_id=repository_id)
        assert outcome is not None
        recorded = outcome.model.metrics["selection_weights"]
        weighted_text = outcome.model.model_text
        scorer = outcome.model.metrics["scorer"]["name"]
        # A ranking objective weighs builds, not rows (scheduler.risk.training).
        ranking = choice.candidate(scorer).ranking
    assert recorded == {"explored_rows": 24, "cap": 20.0, "max": 3.0, "applied": not ranking}
    # The same history without the plans' records trains another model.
    with database.session() as session:
        for plan in session.scalars(select(Plan)):
            plan.decision = None
    with database.session() as session:
        again = training.train(session, repository_id=repository_id)
        assert again is not None
        assert again.model.metrics["selection_weights"]["explored_rows"] == 0
        assert (again.model.model_text != weighted_text) is not ranking
