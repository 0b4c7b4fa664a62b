"""Promotion without bias: a candidate and the active model (or the
heuristic) are compared on the same held-out builds, none of which either
was trained on or stopped early on, and the candidate is promoted only when
the paired bootstrap interval of its per-build APFD lead is above 0. On both
backends, with histories written so that the registry's decisions are
known in advance."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from scheduler.db import Database
from scheduler.ingest.history import read_history
from scheduler.models import ModelStatus, Provider
from scheduler.services import history, repos, training
from tests.backtest.test_served import TESTS, write_history
from tests.e2e.conftest import clean_env
from tests.test_cli_outcomes import one_line, riskrank

Fails = Callable[[int, int], bool]


def import_builds(
    database: Database, tmp_path: Path, repository_id: int, first: int, last: int, fails: Fails
) -> None:
    path = write_history(tmp_path / f"builds-{first}.jsonl", last - first, fails, first=first)
    history.import_history(database, repository_id=repository_id, reports=read_history(path))


def new_repository(database: Database, name: str) -> int:
    with database.session() as session:
        return repos.add_repository(session, provider=Provider.GENERIC, full_name=name).id


# A fixed pattern of extra failures, the same on every run (not a secret).
_NOISE = random.Random(5)  # noqa: S311
NOISE = {(_NOISE.randrange(2, TESTS), build) for build in range(200) if _NOISE.random() < 0.25}


def alternating(test: int, build: int) -> bool:
    """t00 fails in the even builds and t01 in the odd ones, and now and then
    another test fails once: the heuristic puts the one that failed last
    first, always the wrong one of the pair, and a model learns the flip."""
    return (test, build % 2) in ((0, 0), (1, 1)) or (test, build) in NOISE


def steady(test: int, build: int) -> bool:
    """t00 fails in every build from the second on: the heuristic (the last
    failed first) already gives the optimal order, so a candidate can at
    best tie with it."""
    return test == 0 and build > 0


def counted(repository: str) -> dict[str, float]:
    """This process's training counters (scheduler.metrics) for `repository`."""

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    trainings = "riskrank_trainings_total"
    seconds = "riskrank_training_seconds_count"
    return {
        "promoted": value(trainings, repository=repository, outcome="promoted"),
        "kept": value(trainings, repository=repository, outcome="kept"),
        "failed": value(trainings, repository=repository, outcome="failed"),
        "seconds promoted": value(seconds, outcome="promoted"),
        "seconds kept": value(seconds, outcome="kept"),
        "promotions by training": value("riskrank_model_promotions_total", by="training"),
    }


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in after}


def train(database: Database, repository_id: int) -> tuple[training.TrainingOutcome, Any]:
    with database.session() as session:
        outcome = training.train_repository(session, repository_id=repository_id)
        assert outcome is not None
        return outcome, outcome.model.metrics


def test_a_clearly_better_candidate_is_promoted(database: Database, tmp_path: Path) -> None:
    repository_id = new_repository(database, "acme/flip")
    import_builds(database, tmp_path, repository_id, 0, 100, alternating)
    before = counted("acme/flip")
    outcome, metrics = train(database, repository_id)
    comparison = metrics["comparison"]

    assert outcome.promoted
    assert outcome.model.status is ModelStatus.ACTIVE
    assert moved(before, counted("acme/flip")) == {
        "promoted": 1,
        "kept": 0,
        "failed": 0,
        "seconds promoted": 1,
        "seconds kept": 0,
        "promotions by training": 1,
    }
    assert comparison["against"] == "heuristic"
    assert comparison["against_version"] is None
    assert comparison["against_trained_through"] is None
    # Every one of the 20 held-out builds has a failure (t00 or t01).
    assert comparison["builds"] == 20
    assert comparison["wins"] + comparison["losses"] + comparison["ties"] == 20
    assert comparison["low"] > 0
    assert comparison["low"] <= comparison["mean_difference"] <= comparison["high"]
    phrase = interval(comparison, 20)
    assert outcome.reason == f"ahead of the heuristic: {phrase}"
    assert metrics["decision"] == outcome.reason
    # The table's rows are on those builds too: the difference of the means.
    assert metrics["candidate"]["failing_builds"] == metrics["heuristic"]["failing_builds"] == 20
    assert metrics["candidate"]["mean_apfd"] - metrics["heuristic"]["mean_apfd"] == pytest.approx(
        comparison["mean_difference"]
    )

    # 100 builds: the newest 20 held out from everything, the newest 16 of
    # the others for early stopping, 64 to train on; the served model is
    # refit on all 100.
    ranges = metrics["ranges"]
    assert spans(ranges) == {
        "train": (0, 63, 64),
        "early_stopping": (64, 79, 16),
        "held_out": (80, 99, 20),
        "compared": (80, 99, 20),
    }
    assert ranges["compared"]["first_build"].endswith("b81")
    assert ranges["early_stopping"]["last_at"] < ranges["compared"]["first_at"]
    assert metrics["trained_through"]["build"].endswith("b100")
    assert metrics["trained_through"]["index"] == 99


def test_a_candidate_only_as_good_as_the_heuristic_is_refused(
    database: Database, tmp_path: Path
) -> None:
    repository_id = new_repository(database, "acme/steady")
    import_builds(database, tmp_path, repository_id, 0, 40, steady)
    before = counted("acme/steady")
    outcome, metrics = train(database, repository_id)

    assert not outcome.promoted
    assert outcome.model.status is ModelStatus.CANDIDATE
    assert moved(before, counted("acme/steady")) == {
        "promoted": 0,
        "kept": 1,
        "failed": 0,
        "seconds promoted": 0,
        "seconds kept": 1,
        "promotions by training": 0,
    }
    assert outcome.reason == "not ahead of the heuristic: +0.0000 [+0.0000, +0.0000] over 8 builds"
    comparison = metrics["comparison"]
    assert (comparison["builds"], comparison["wins"], comparison["losses"], comparison["ties"]) == (
        8,
        0,
        0,
        8,
    )
    assert comparison["low"] == comparison["high"] == 0.0
    assert spans(metrics["ranges"])["compared"] == (32, 39, 8)


def test_against_the_active_model_only_builds_after_both_trainings_count(
    database: Database, tmp_path: Path
) -> None:
    """v1 (made active by an operator) saw builds 0-69; v2, trained on 80
    builds, holds out 64-79 from its training and early stopping but is
    compared on 70-79 only: v1 learnt from the others. Both put t00 first,
    so v2 is refused as no better."""
    repository_id = new_repository(database, "acme/steady")
    import_builds(database, tmp_path, repository_id, 0, 70, steady)
    first, first_metrics = train(database, repository_id)
    assert not first.promoted
    with database.session() as session:
        training.promote(session, repository_id=repository_id, version=1)
    import_builds(database, tmp_path, repository_id, 70, 80, steady)
    second, metrics = train(database, repository_id)

    assert first_metrics["trained_through"]["index"] == 69
    comparison = metrics["comparison"]
    assert (comparison["against"], comparison["against_version"]) == ("active model", 1)
    assert comparison["against_trained_through"] == first_metrics["trained_through"]
    assert not second.promoted
    assert second.reason == (
        "not ahead of the active model v1: +0.0000 [+0.0000, +0.0000] over 10 builds"
    )
    ranges = metrics["ranges"]
    assert spans(ranges) == {
        "train": (0, 50, 51),
        "early_stopping": (51, 63, 13),
        "held_out": (64, 79, 16),
        "compared": (70, 79, 10),
    }
    # Disjoint from what either model learnt from or stopped early on.
    assert ranges["compared"]["first_at"] > first_metrics["trained_through"]["at"]
    assert ranges["compared"]["first_at"] > ranges["early_stopping"]["last_at"]
    assert metrics["active"]["failing_builds"] == metrics["candidate"]["failing_builds"] == 10
    with database.session() as session:
        assert training.active_model(session, repository_id).version == 1  # type: ignore[union-attr]


def test_nothing_to_compare_on_is_a_refusal_that_says_why(
    database: Database, tmp_path: Path
) -> None:
    repository_id = new_repository(database, "acme/quiet")
    # t00 fails in builds 1-59, then nothing fails: the newest 16 of 80
    # builds, held out, have no failure to order.
    import_builds(
        database,
        tmp_path,
        repository_id,
        0,
        80,
        lambda test, build: steady(test, build) and build < 60,
    )
    outcome, metrics = train(database, repository_id)
    assert not outcome.promoted
    assert outcome.reason == "not compared with the heuristic: no failure in the 16 held-out builds"
    assert metrics["comparison"]["builds"] == 0
    assert metrics["comparison"]["low"] is None
    assert spans(metrics["ranges"])["compared"] == (64, 79, 16)

    # Trained again on the same builds against an active v1 that saw them all.
    with database.session() as session:
        training.promote(session, repository_id=repository_id, version=1)
    second, metrics = train(database, repository_id)
    assert not second.promoted
    assert second.reason == (
        "not compared with the active model v1: it was trained on every held-out build"
    )
    assert metrics["ranges"]["compared"] is None
    assert metrics["candidate"] is None


def test_what_an_older_record_saw_is_read_from_its_training_time(
    database: Database, tmp_path: Path
) -> None:
    """A model recorded before the ranges were kept: its last training time
    (train_to) says where its training ended."""
    repository_id = new_repository(database, "acme/steady")
    import_builds(database, tmp_path, repository_id, 0, 70, steady)
    train(database, repository_id)
    with database.session() as session:
        record = training.promote(session, repository_id=repository_id, version=1)
        record.metrics = {
            key: value for key, value in record.metrics.items() if key != "trained_through"
        }
    import_builds(database, tmp_path, repository_id, 70, 80, steady)
    _, metrics = train(database, repository_id)
    assert metrics["comparison"]["against_trained_through"]["index"] == 69
    assert spans(metrics["ranges"])["compared"] == (70, 79, 10)


def test_an_active_model_reading_other_features_leaves_the_heuristic_as_the_bar(
    database: Database, tmp_path: Path
) -> None:
    repository_id = new_repository(database, "acme/flip")
    import_builds(database, tmp_path, repository_id, 0, 100, alternating)
    train(database, repository_id)
    with database.session() as session:
        record = training.promote(session, repository_id=repository_id, version=1)
        record.feature_names = [*record.feature_names, "a_feature_no_longer_computed"]
    outcome, metrics = train(database, repository_id)
    comparison = metrics["comparison"]
    assert (comparison["against"], comparison["against_version"]) == ("heuristic", None)
    assert metrics["active"] is None
    # Nothing that v1 saw limits the comparison: all 20 held-out builds.
    assert spans(metrics["ranges"])["compared"] == (80, 99, 20)
    assert outcome.promoted
    assert outcome.reason == (
        "ahead of the heuristic (the active model v1 reads other features): "
        + interval(comparison, 20)
    )


def test_models_show_and_list_carry_the_interval(
    database: Database, db_url: str, tmp_path: Path
) -> None:
    repository_id = new_repository(database, "acme/flip")
    import_builds(database, tmp_path, repository_id, 0, 100, alternating)
    outcome, metrics = train(database, repository_id)
    assert outcome.promoted
    phrase = interval(metrics["comparison"], 20)
    comparison = metrics["comparison"]
    env = clean_env(RISKRANK_DATABASE_URL=db_url)

    shown = riskrank("models", "show", "acme/flip", env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.explain()
    assert (
        f"APFD against the heuristic, per held-out build, import:b81 to import:b100: {phrase} "
        "(95% bootstrap interval; "
        f"{comparison['wins']} won, {comparison['losses']} lost, {comparison['ties']} tied)"
    ) in one_line(shown.stdout)
    assert f"decision: ahead of the heuristic: {phrase}" in one_line(shown.stdout)
    # What was trained, chosen among the candidates on the builds before the
    # held-out ones (60-79 of 0-79; the held-out 80-99 decide the promotion).
    picked = metrics["choice"]
    assert picked["scored_builds"] == {"first_index": 60, "last_index": 79}
    assert spans(metrics["ranges"])["held_out"] == (80, 99, 20)
    assert [trial["name"] for trial in picked["trials"]] == [
        "new first, then recently failed",
        "recently failed first",
        "failure rate",
        "additive model",
        "trees of depth 3",
        "ranking",
    ]
    assert metrics["scorer"]["name"] == picked["chosen"]
    best = max(trial["mean_apfd"] for trial in picked["trials"])
    chosen = next(t for t in picked["trials"] if t["name"] == picked["chosen"])
    assert chosen["mean_apfd"] == best
    text = one_line(shown.stdout)
    assert f"scorer: {picked['chosen']} (" in text
    assert f"{picked['chosen']} (chosen)" in text
    # How its plans break ties, chosen on every build.
    tie = metrics["tie"]
    rule = "the younger first" if tie["younger_first"] else "in the order first seen"
    assert f"equal scores: {rule} (the heuristic's mean APFD over {tie['failing_builds']}" in text

    table = riskrank("models", "list", "acme/flip", env=env, cwd=tmp_path)
    assert table.returncode == 0, table.explain()
    lead = (
        f"{comparison['mean_difference']:+.3f} [{comparison['low']:+.3f}, "
        f"{comparison['high']:+.3f}] (20)"
    )
    assert lead in table.stdout

    listed = riskrank("models", "list", "acme/flip", "--json", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.explain()
    (row,) = json.loads(listed.stdout)
    assert row["comparison"] == comparison
    assert row["decision"] == outcome.reason
    assert row["scorer"] == picked["chosen"]


def interval(comparison: dict[str, Any], builds: int) -> str:
    return (
        f"{comparison['mean_difference']:+.4f} [{comparison['low']:+.4f}, "
        f"{comparison['high']:+.4f}] over {builds} builds"
    )


def spans(ranges: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    return {
        name: (span["first_index"], span["last_index"], span["builds"])
        for name, span in ranges.items()
    }


def test_an_active_model_the_heuristic_beats_since_is_retired(
    database: Database, db_url: str, tmp_path: Path
) -> None:
    """v1 learns that t00 and t01 take turns (a test that failed in the last
    build passes in this one). Then they stop failing and t05 fails in every
    build: the heuristic (the last failed first) finds it first, v1 puts t05
    behind the pair. On the builds since v1's training the heuristic is
    ahead of it, so v1 is retired; the candidate must clear the heuristic
    and does not: the heuristic serves."""
    repository_id = new_repository(database, "acme/changed")
    import_builds(database, tmp_path, repository_id, 0, 100, alternating)
    first, _ = train(database, repository_id)
    assert first.promoted
    import_builds(database, tmp_path, repository_id, 100, 140, lambda test, _: test == 5)
    retirements = REGISTRY.get_sample_value("riskrank_model_retirements_total") or 0.0
    second, metrics = train(database, repository_id)
    assert second.retired
    assert REGISTRY.get_sample_value("riskrank_model_retirements_total") == retirements + 1

    comparison = metrics["comparison"]
    assert not second.promoted
    assert comparison["against"] == "heuristic"
    # t05 first of 20 against third: APFD 0.975 against 0.875 in each of 28 builds.
    retired = (
        "the heuristic is ahead of the active model v1: +0.1000 [+0.1000, +0.1000] over 28 builds"
    )
    assert comparison["active_retired"] == retired
    assert second.reason == (
        f"not ahead of the heuristic: +0.0000 [+0.0000, +0.0000] over 28 builds; "
        f"{retired}, so it is retired"
    )
    assert metrics["decision"] == second.reason
    with database.session() as session:
        assert training.active_model(session, repository_id) is None
        models = training.list_models(session, repository_id=repository_id)
        assert {m.version: m.status for m in models} == {
            1: ModelStatus.RETIRED,
            2: ModelStatus.CANDIDATE,
        }
    # None is active: `models show` shows the newest, which says why.
    shown = riskrank(
        "models", "show", "acme/changed", env=clean_env(RISKRANK_DATABASE_URL=db_url), cwd=tmp_path
    )
    assert shown.returncode == 0, shown.explain()
    text = one_line(shown.stdout)
    assert text.startswith("model v2 (candidate), trained ")
    assert f"decision: {second.reason}" in text
    assert "│ active model v1 (retired by this training) │ 0.875 │" in text
