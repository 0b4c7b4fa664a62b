"""The plan service: where the policy's parameters come from, the periodic
full run of the default branch, and failing open on a real error."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select, text

from scheduler import migrate
from scheduler.db import Database
from scheduler.models import Plan, Repository
from scheduler.services import plans
from scheduler.services.plans import PlanDefaults, PlanParameterError, PlanRequest, RepositoryRef
from tests.planning.data import FLAKY, NAMES, SHA, add_commit, make_repository, recorded

DEFAULTS = PlanDefaults(wait_seconds=0)


def reference(database: Database, repository_id: int) -> RepositoryRef:
    with database.session() as session:
        repository = session.get_one(Repository, repository_id)
        return RepositoryRef(repository.id, repository.default_branch, dict(repository.settings))


def test_request_overrides_repository_settings_which_override_defaults() -> None:
    repository = RepositoryRef(
        1,
        "main",
        {
            "mode": "fraction",
            "budget": 0.4,
            "exploration_rate": 0.1,
            "must_run": ["*smoke*"],
            "extra_full_run_paths": ["Dockerfile"],
            "recent_failures": "three",  # a typo: ignored, the default applies
        },
    )
    policy, shard = plans.policy_of(PlanRequest(), repository, DEFAULTS)
    assert (policy.mode, policy.budget, policy.exploration_rate) == ("fraction", 0.4, 0.1)
    assert policy.must_run == ("*smoke*",)
    assert policy.full_run_paths[-1] == "Dockerfile"
    assert "poetry.lock" in policy.full_run_paths
    assert policy.recent_failures == DEFAULTS.recent_failures
    assert shard is None
    asked, shard = plans.policy_of(
        PlanRequest(mode="time", budget=60, shard="2/3"), repository, DEFAULTS
    )
    assert (asked.mode, asked.budget, str(shard)) == ("time", 60.0, "2/3")
    # Another mode without a budget does not borrow the repository's.
    with pytest.raises(PlanParameterError, match="mode time needs a budget"):
        plans.policy_of(PlanRequest(mode="time"), repository, DEFAULTS)


def test_every_nth_default_branch_build_is_a_full_run(database: Database) -> None:
    repository_id = make_repository(database, settings={"full_run_every": 7})
    repository = reference(database, repository_id)
    # Six imported builds of main; the seventh scored commit of main runs everything.
    request = PlanRequest(mode="fraction", budget=0.1, branch="main")
    seventh = plans.plan_for(
        database, repository=repository, sha=SHA, request=request, defaults=DEFAULTS
    )
    assert seventh["full_run"] is True
    assert "every 7th build of the default branch" in seventh["full_run_reason"]
    eighth = plans.plan_for(
        database, repository=repository, sha="cd" * 20, request=request, defaults=DEFAULTS
    )
    assert eighth["full_run"] is False
    other = plans.plan_for(
        database,
        repository=repository,
        sha="ef" * 20,
        request=PlanRequest(mode="fraction", budget=0.1, branch="feature"),
        defaults=DEFAULTS,
    )
    assert other["full_run"] is False


def test_recently_failed_tests_always_run(database: Database) -> None:
    repository_id = make_repository(
        database, settings={"recent_failures": 5, "exploration_rate": 0}
    )
    plan = plans.plan_for(
        database,
        repository=reference(database, repository_id),
        sha=SHA,
        request=PlanRequest(mode="fraction", budget=0),
        defaults=DEFAULTS,
    )
    [chosen] = [test for test in plan["tests"] if test["selected"]]
    assert (chosen["test"], chosen["rule"]) == (FLAKY, "recently_failed")
    assert chosen["reason"].startswith("Failed in one of its last 5 runs. Last failed 3 builds ago")


def test_own_file_changed_is_read_from_the_stored_features(database: Database) -> None:
    repository_id = make_repository(database, settings={"exploration_rate": 0})
    add_commit(database, repository_id, SHA, "tests/test_ui.py")
    plan = plans.plan_for(
        database,
        repository=reference(database, repository_id),
        sha=SHA,
        request=PlanRequest(mode="fraction", budget=0),
        defaults=DEFAULTS,
    )
    chosen = {test["test"]: test["rule"] for test in plan["tests"] if test["selected"]}
    assert chosen == {
        "tests/test_ui.py::test_click": "own_file_changed",
        "tests/test_ui.py::test_scroll": "own_file_changed",
    }


@pytest.fixture
def private_sqlite(tmp_path: Path) -> Database:
    """A database of this test's own: the fallback tests break its schema."""
    url = f"sqlite:///{tmp_path / 'broken.db'}"
    migrate.upgrade(url)
    return Database.from_url(url)


def test_an_error_answers_everything_in_heuristic_order(private_sqlite: Database) -> None:
    database = private_sqlite
    repository_id = make_repository(database)
    repository = reference(database, repository_id)
    with database.session() as session:  # scoring cannot store a plan any more
        session.execute(text("ALTER TABLE plan_items RENAME TO plan_items_gone"))
    collected = [*reversed(NAMES), "tests/test_new.py::test_fresh"]
    plan = plans.plan_for(
        database,
        repository=repository,
        sha=SHA,
        request=PlanRequest(mode="fraction", budget=0.1, tests=collected),
        defaults=DEFAULTS,
    )
    assert (plan["status"], plan["plan_id"], plan["full_run"]) == ("fallback", None, True)
    assert plan["message"].startswith("scoring failed: OperationalError")
    assert plan["total"] == plan["selected"] == len(collected)
    order = [test["test"] for test in plan["tests"]]
    # The test that failed most often first; the rest as collected.
    assert order == [FLAKY] + [name for name in collected if name != FLAKY]
    assert all(test["selected"] and test["rule"] == "full_run" for test in plan["tests"])
    # Shards of a fallback still split the suite.
    halves = [
        plans.plan_for(
            database,
            repository=repository,
            sha=SHA,
            request=PlanRequest(tests=collected, shard=f"{i}/2"),
            defaults=DEFAULTS,
        )
        for i in (1, 2)
    ]
    listed = [test["test"] for half in halves for test in half["tests"]]
    assert sorted(listed) == sorted(collected)
    # The collected list is the whole suite; without one, riskrank's known
    # tests may not be: the answer says to run the whole suite.
    assert plan["run_all"] is False
    unlisted = plans.plan_for(
        database, repository=repository, sha=SHA, request=PlanRequest(), defaults=DEFAULTS
    )
    assert (unlisted["status"], unlisted["run_all"]) == ("fallback", True)
    assert sorted(test["test"] for test in unlisted["tests"]) == sorted(NAMES)


def test_an_error_with_unreadable_statistics_keeps_the_given_order(
    private_sqlite: Database,
) -> None:
    database = private_sqlite
    repository_id = make_repository(database)
    repository = reference(database, repository_id)
    with database.session() as session:
        session.execute(text("ALTER TABLE plan_items RENAME TO plan_items_gone"))
        session.execute(text("ALTER TABLE test_stats RENAME TO test_stats_gone"))
    collected = list(reversed(NAMES))
    plan = plans.plan_for(
        database,
        repository=repository,
        sha=SHA,
        request=PlanRequest(tests=collected),
        defaults=DEFAULTS,
    )
    assert plan["status"] == "fallback"
    assert [test["test"] for test in plan["tests"]] == collected


def test_a_deferred_decision_is_recorded_only_when_written(
    database: Database, tmp_path: Path
) -> None:
    """The API answers first and records the policy's decision after; a
    failed write is logged, not raised, and the next request for the
    policy writes it again."""
    repository_id = make_repository(database)
    repository = reference(database, repository_id)
    request = PlanRequest(mode="fraction", budget=0.5)
    first = plans.plan_answer(
        database, repository=repository, sha=SHA, request=request, defaults=DEFAULTS, defer=True
    )
    assert first.pending is not None
    with database.session() as session:
        assert session.execute(select(Plan.policy, Plan.decision)).one() == (None, None)

    broken = Database.from_url(f"sqlite:///{tmp_path}/missing/riskrank.db")
    plans.write_decision(broken, first.pending)  # logged, not raised
    broken.dispose()
    again = plans.plan_answer(
        database, repository=repository, sha=SHA, request=request, defaults=DEFAULTS, defer=True
    )
    assert again.pending is not None  # still unrecorded: written again
    plans.write_decision(database, again.pending)
    decided = recorded(database, first.head["plan_id"])
    answered = {test["test"]: test for test in again.to_dict()["tests"]}
    assert set(decided) == set(NAMES) == set(answered)
    for name, (selected, propensity, rule) in decided.items():
        assert (selected, rule) == (answered[name]["selected"], answered[name]["rule"])
        assert propensity == (0.05 if rule in ("budget", "exploration") else 1.0)
    third = plans.plan_answer(
        database, repository=repository, sha=SHA, request=request, defaults=DEFAULTS, defer=True
    )
    assert third.pending is None  # recorded: nothing to write
    assert third.to_dict()["tests"] == again.to_dict()["tests"]


def test_concurrent_decisions_for_one_plan_leave_one_whole(database: Database) -> None:
    """Shards asking at once, or new policies back to back, record decisions
    on the same plan at once: each is one row's update, so the last one
    written stands whole, its policy with its decision."""
    repository_id = make_repository(database)
    repository = reference(database, repository_id)
    pending = []
    for budget in (0.2, 0.4, 0.6, 0.8):
        answer = plans.plan_answer(
            database,
            repository=repository,
            sha=SHA,
            request=PlanRequest(mode="fraction", budget=budget),
            defaults=DEFAULTS,
            defer=True,
        )
        assert answer.pending is not None
        pending.append(answer.pending)
    start = threading.Barrier(len(pending))

    def write(decision: plans.PendingDecision) -> None:
        start.wait()
        with database.session() as session:
            decision.write(session)

    with ThreadPoolExecutor(len(pending)) as pool:
        list(pool.map(write, pending))
    with database.session() as session:
        applied = session.scalars(select(Plan.policy)).one()
    winner = next(decision for decision in pending if decision.applied == applied)
    selected = sum(1 for chosen, _, _ in recorded(database, winner.plan_id).values() if chosen)
    assert selected == int(winner.decision.selected.sum())
