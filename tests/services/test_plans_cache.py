"""What the plan service keeps in the process between requests (a plan's
stored part, the decisions made) never hides a change: new outcomes, another
plan under the same id in another database, or other collected tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import delete, select, update

from scheduler import migrate
from scheduler.db import Database
from scheduler.models import KnownTest, KnownTestStats, Plan, Repository, StatsChange
from scheduler.services import history, plans
from scheduler.services.plans import PlanDefaults, PlanRequest, RepositoryRef
from tests.planning.data import FLAKY, NAMES, SHA, make_repository, report

DEFAULTS = PlanDefaults(wait_seconds=0)
QUIET = "tests/test_db.py::test_query"


def reference(database: Database, repository_id: int) -> RepositoryRef:
    with database.session() as session:
        repository = session.get_one(Repository, repository_id)
        return RepositoryRef(repository.id, repository.default_branch, dict(repository.settings))


def ask(database: Database, repository: RepositoryRef, **request: object) -> dict[str, object]:
    return plans.plan_for(
        database,
        repository=repository,
        sha=SHA,
        request=PlanRequest(**request),  # type: ignore[arg-type]
        defaults=DEFAULTS,
    )


def rules(plan: dict[str, object]) -> dict[str, str]:
    tests = plan["tests"]
    assert isinstance(tests, list)
    return {test["test"]: test["rule"] for test in tests}


def test_new_outcomes_change_the_next_answer(database: Database) -> None:
    repository_id = make_repository(database, settings={"exploration_rate": 0})
    repository = reference(database, repository_id)
    first = ask(database, repository, mode="fraction", budget=0.0)
    assert rules(first)[QUIET] == "budget"
    assert ask(database, repository, mode="fraction", budget=0.0) == first  # served again
    # A build after the plan was scored: QUIET fails. The stored scores stay,
    # the statistics the policy reads do not.
    history.import_history(database, repository_id=repository_id, reports=[report(7, {QUIET})])
    second = ask(database, repository, mode="fraction", budget=0.0)
    assert second["plan_id"] == first["plan_id"]
    assert rules(second)[QUIET] == "recently_failed"
    assert rules(second)[FLAKY] == "budget"  # its failures are 5 builds back now


def test_collected_tests_are_part_of_the_question(database: Database) -> None:
    repository = reference(database, make_repository(database))
    everything = ask(database, repository, mode="order")
    some = ask(database, repository, mode="order", tests=[NAMES[0], "tests/test_new.py::test_x"])
    assert everything["total"] == len(NAMES)
    assert some["total"] == 2
    assert rules(some)["tests/test_new.py::test_x"] == "new"
    assert ask(database, repository, mode="order")["total"] == len(NAMES)


def test_the_same_plan_id_in_another_database_is_another_plan(tmp_path: Path) -> None:
    answers = []
    for name, failing in (("one", set()), ("two", {NAMES[5]})):
        url = f"sqlite:///{tmp_path / name}.db"
        migrate.upgrade(url)
        database = Database.from_url(url)
        try:
            repository_id = make_repository(database)
            history.import_history(
                database, repository_id=repository_id, reports=[report(7, failing)]
            )
            answers.append(ask(database, reference(database, repository_id), mode="order"))
        finally:
            database.dispose()
    assert answers[0]["plan_id"] == answers[1]["plan_id"]
    assert answers[0]["tests"] != answers[1]["tests"]


def test_statistics_are_read_again_only_when_their_version_moved(database: Database) -> None:
    """A plan serves the statistics stored with its payload while the
    repository's statistics version is the one it was scored at; ingestion
    moves the version (test_new_outcomes_change_the_next_answer), and with
    it, the statistics are read again."""
    repository_id = make_repository(database, settings={"exploration_rate": 0})
    repository = reference(database, repository_id)
    first = ask(database, repository, mode="fraction", budget=0.0)
    assert rules(first)[QUIET] == "budget"
    with database.session() as session:  # behind the version's back
        session.execute(
            update(KnownTestStats)
            .where(KnownTestStats.test_id == KnownTest.id, KnownTest.name == QUIET)
            .values(recent="FPPPP", duration_mean=9.5)
        )
    assert ask(database, repository, mode="fraction", budget=0.0) == first
    with database.session() as session:
        session.execute(
            update(Repository)
            .where(Repository.id == repository_id)
            .values(stats_version=Repository.stats_version + 1)
        )
    moved = ask(database, repository, mode="fraction", budget=0.0)
    assert moved["plan_id"] == first["plan_id"]
    [quiet] = [test for test in moved["tests"] if test["test"] == QUIET]
    assert (quiet["rule"], quiet["duration"]) == ("recently_failed", 9.5)


def test_a_plan_scored_before_payloads_is_scored_again(database: Database) -> None:
    """Plans stored before plans had a payload (an upgrade) are scored again
    when asked for, even when CI followed them already."""
    repository = reference(database, make_repository(database))
    first = ask(database, repository, mode="fraction", budget=0.5)
    with database.session() as session:
        session.execute(update(Plan).where(Plan.id == first["plan_id"]).values(payload=None))
    again = ask(database, repository, mode="fraction", budget=0.5)
    assert again["status"] == first["status"] == "heuristic"
    assert again["plan_id"] != first["plan_id"]
    assert [test["test"] for test in again["tests"]] == [test["test"] for test in first["tests"]]


def _sneak(database: Database, name: str, **values: object) -> None:
    """Change a test's statistics behind the repository's version."""
    with database.session() as session:
        session.execute(
            update(KnownTestStats)
            .where(KnownTestStats.test_id == KnownTest.id, KnownTest.name == name)
            .values(**values)
        )


def test_after_an_ingestion_only_the_tests_it_changed_are_read_again(
    database: Database,
) -> None:
    """Each ingestion records which tests it changed under its version; a
    plan scored before reads again those only. Without the record of a
    version between (pruned, or written before records were kept), every
    test's statistics are read again."""
    repository_id = make_repository(database, settings={"exploration_rate": 0})
    repository = reference(database, repository_id)
    first = ask(database, repository, mode="fraction", budget=0.0)
    _sneak(database, FLAKY, duration_mean=42.0)
    # A build of QUIET alone: its statistics change, and are recorded as changed.
    history.import_history(
        database,
        repository_id=repository_id,
        reports=[report(7, {QUIET}, tests={QUIET: 0.25})],
    )
    with database.session() as session:
        version, ids = session.execute(
            select(StatsChange.version, StatsChange.test_ids).order_by(StatsChange.version.desc())
        ).first() or (None, None)
        quiet_id = session.scalar(select(KnownTest.id).where(KnownTest.name == QUIET))
        assert session.scalar(select(Repository.stats_version)) == version
    assert ids is not None
    assert np.frombuffer(ids, dtype="<i8").tolist() == [quiet_id]

    durations = {test["test"]: test["duration"] for test in first["tests"]}
    second = ask(database, repository, mode="fraction", budget=0.0)
    seen = {test["test"]: test for test in second["tests"]}
    assert seen[QUIET]["rule"] == "recently_failed"
    assert seen[QUIET]["duration"] != durations[QUIET]  # read again
    assert seen[FLAKY]["duration"] == durations[FLAKY]  # not changed by a recorded write

    with database.session() as session:  # the record goes: everything is read again
        session.execute(delete(StatsChange))
        session.execute(update(Repository).values(stats_version=Repository.stats_version + 1))
    third = ask(database, repository, mode="fraction", budget=0.0)
    assert {test["test"]: test for test in third["tests"]}[FLAKY]["duration"] == 42.0
