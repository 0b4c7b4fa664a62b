"""Scoring a commit into a plan, with the heuristic and with a model kept in
the database, on both backends."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from scheduler.db import Database
from scheduler.ingest.history import HistoryReport
from scheduler.models import (
    ChangedFile,
    FileStatus,
    KnownTest,
    ModelStatus,
    Plan,
    PlanItem,
    PlanStatus,
    Provider,
    RiskModel,
)
from scheduler.planning.policy import Context, Policy, decide
from scheduler.planning.records import Payload
from scheduler.risk import choice
from scheduler.risk.calibration import ISOTONIC, Calibration
from scheduler.risk.features import (
    FEATURE_NAMES,
    NEW_TEST_PRIOR,
    FeatureMatrix,
)
from scheduler.risk.heuristic import heuristic_scores
from scheduler.risk.serving import load_model
from scheduler.risk.training import train_model
from scheduler.services import history, plans, repos, runs, scoring
from scheduler.services.plans.items import Stats
from tests.planning import data as planning_data

TESTS = [
    "tests/test_io.py::test_read",
    "tests/test_io.py::test_write",
    "tests/test_net.py::test_get",
]


def report(build: int, failing: set[str], *, changed: tuple[str, ...] = ()) -> HistoryReport:
    return planning_data.report(build, failing, changed=changed, tests=dict.fromkeys(TESTS, 1.0))


@pytest.fixture
def repository(database: Database) -> int:
    with database.session() as session:
        repository_id = repos.add_repository(
            session, provider=Provider.GITHUB, full_name="acme/app"
        ).id
    reports = [
        report(1, set()),
        report(2, {TESTS[2]}),
        report(3, {TESTS[2]}, changed=("src/net.py",)),
    ]
    history.import_history(database, repository_id=repository_id, reports=reports)
    return repository_id


def new_commit(database: Database, repository_id: int, *paths: str) -> int:
    with database.session() as session:
        repository = session.get_one(repos.Repository, repository_id)
        commit_id = runs.ensure_commit(session, repository=repository, sha="f" * 40)
        for path in paths:
            session.add(ChangedFile(commit_id=commit_id, path=path, status=FileStatus.MODIFIED))
        return commit_id


def plan_items(database: Database, plan_id: int) -> list[tuple[str, float, int, bytes, str | None]]:
    with database.session() as session:
        return [
            tuple(row)  # type: ignore[misc]
            for row in session.execute(
                select(
                    KnownTest.name,
                    PlanItem.probability,
                    PlanItem.rank,
                    PlanItem.features,
                    PlanItem.reason,
                )
                .join(KnownTest, KnownTest.id == PlanItem.test_id)
                .where(PlanItem.plan_id == plan_id)
                .order_by(PlanItem.rank)
            )
        ]


def test_heuristic_plan_ranks_the_failing_test_first(database: Database, repository: int) -> None:
    commit_id = new_commit(database, repository, "src/net.py")
    with database.session() as session:
        plan = scoring.score_commit(session, commit_id, cache=scoring.ModelCache())
        assert plan is not None
        plan_id, status, names = plan.id, plan.status, plan.feature_names
    assert status is PlanStatus.HEURISTIC
    assert names == list(FEATURE_NAMES)
    items = plan_items(database, plan_id)
    assert items[0][0] == TESTS[2]
    assert [rank for _, _, rank, _, _ in items] == [1, 2, 3]
    for _name, probability, _rank, features, reason in items:
        assert 0 <= probability <= 1
        assert len(np.frombuffer(features, dtype="<f4")) == len(FEATURE_NAMES)
        assert reason
    assert "failed in its last run" in (items[0][4] or "").lower()

    # Scoring again keeps the plan.
    with database.session() as session:
        again = scoring.score_commit(session, commit_id, cache=scoring.ModelCache())
        assert again is not None
        assert again.id == plan_id


def test_unknown_commit_scores_nothing(database: Database, repository: int) -> None:
    with database.session() as session:
        assert scoring.score_commit(session, 999_999) is None


def test_active_model_from_the_database_scores_exactly_as_trained(
    database: Database, repository: int
) -> None:
    text = planning_data.synthetic_model()
    with database.session() as session:
        session.add(
            RiskModel(
                repository_id=repository,
                version=1,
                status=ModelStatus.ACTIVE,
                model_text=text,
                feature_names=list(FEATURE_NAMES),
                params={},
            )
        )
    commit_id = new_commit(database, repository, "src/net.py")
    cache = scoring.ModelCache()
    with database.session() as session:
        plan = scoring.score_commit(session, commit_id, cache=cache)
        assert plan is not None
        assert plan.status is PlanStatus.READY
        plan_id = plan.id
        stored_text = session.scalars(select(RiskModel.model_text)).one()
    items = plan_items(database, plan_id)
    vectors = np.stack([np.frombuffer(features, dtype="<f4") for *_, features, _ in items])
    matrix = FeatureMatrix(tests=("",) * len(vectors), values=vectors)
    # The text read back from the database predicts what the trained booster does.
    stored, trained = load_model(stored_text), load_model(text)
    expected = stored.predict(stored.inputs(matrix))
    assert np.array_equal(expected, trained.predict(trained.inputs(matrix)))
    assert [probability for _, probability, *_ in items] == pytest.approx(
        expected.tolist(), abs=1e-12
    )
    with database.session() as session:
        contributions = session.scalars(select(PlanItem.contributions)).all()
    assert any(contribution for contribution in contributions)


def model_reading(names: tuple[str, ...]) -> str:
    """A model trained on synthetic rows whose columns are `names` (failures
    follow last_failed)."""
    rng = np.random.default_rng(5)
    features = rng.random((2000, len(names))).astype(np.float32)
    last_failed = names.index("last_failed")
    features[:, last_failed] = rng.random(2000) < 0.1
    labels = (features[:, last_failed] > 0) & (rng.random(2000) < 0.7)
    return train_model(features, labels, np.repeat(np.arange(100), 20), names).model_text


def test_a_model_from_before_the_symbol_features_scores_with_the_rest(
    database: Database, repository: int
) -> None:
    """Features added since a model was trained are left out of its inputs:
    it scores as it did until a training brings the new ones in."""
    older = tuple(name for name in FEATURE_NAMES if not name.startswith("symbol_"))
    assert len(older) == len(FEATURE_NAMES) - 2
    text = model_reading(older)
    planning_data.add_model(database, repository, text=text)
    commit_id = new_commit(database, repository, "src/net.py")
    with database.session() as session:
        plan = scoring.score_commit(session, commit_id, cache=scoring.ModelCache())
        assert plan is not None
        assert plan.status is PlanStatus.READY
        plan_id = plan.id
    items = plan_items(database, plan_id)
    vectors = np.stack([np.frombuffer(features, dtype="<f4") for *_, features, _ in items])
    loaded = load_model(text)
    assert not {"symbol_named", "symbol_tokens"} & set(loaded.feature_names)
    matrix = FeatureMatrix(tests=("",) * len(vectors), values=vectors)
    expected = loaded.predict(loaded.inputs(matrix))
    assert [probability for _, probability, *_ in items] == pytest.approx(
        expected.tolist(), abs=1e-12
    )


def test_a_model_reading_features_not_computed_here_leaves_the_heuristic(
    database: Database, repository: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A model that reads a feature this riskrank does not compute (retired,
    or a newer riskrank's) is not an error: the heuristic scores."""
    names = (*FEATURE_NAMES, "a_retired_feature")
    planning_data.add_model(database, repository, text=model_reading(names))
    commit_id = new_commit(database, repository, "src/net.py")
    with database.session() as session:
        plan = scoring.score_commit(session, commit_id, cache=scoring.ModelCache())
        assert plan is not None
        assert (plan.status, plan.model_id) == (PlanStatus.HEURISTIC, None)
        plan_id = plan.id
    items = plan_items(database, plan_id)
    assert items[0][0] == TESTS[2]  # the heuristic's order: it failed last
    assert "reads features not computed here (a_retired_feature)" in caplog.text


def test_reasons_name_the_changed_file_that_failed_with_the_test(database: Database) -> None:
    """Through the plan's write (COPY on PostgreSQL), a reason names the
    strongest co-failing changed path as it is, escapes and all."""
    odd = "src/odd\tname\\with\nbreaks.py"
    with database.session() as session:
        repository_id = repos.add_repository(
            session, provider=Provider.GITHUB, full_name="acme/odd"
        ).id
    reports = [
        report(1, set()),
        report(2, {TESTS[2]}, changed=("src/net.py", odd)),
        report(3, {TESTS[2]}, changed=(odd,)),
        report(4, set(), changed=("src/net.py",)),
    ]
    history.import_history(database, repository_id=repository_id, reports=reports)
    commit_id = new_commit(database, repository_id, "src/net.py", odd)
    with database.session() as session:
        plan = scoring.score_commit(session, commit_id, cache=scoring.ModelCache())
        assert plan is not None
        plan_id = plan.id
    reasons = {name: reason for name, *_, reason in plan_items(database, plan_id)}
    # It broke in build 2 with both paths changed and stayed red in 3: one
    # status change together with each (older builds weigh a little less).
    assert reasons[TESTS[2]] == (
        f"Last failed 1 build ago; {odd} changed and failed together with it 1 time"
    )


def test_scoring_the_same_commit_at_once_stores_one_plan(
    database: Database, repository: int
) -> None:
    """The worker and the API, or the shards of one build, score an unscored
    commit at the same moment: one waits for the other and finds its plan."""
    commit_id = new_commit(database, repository, "src/net.py")
    start = threading.Barrier(4)

    def score() -> int:
        start.wait()
        with database.session() as session:
            plan = scoring.score_commit(session, commit_id, cache=scoring.ModelCache())
            assert plan is not None
            return plan.id

    with ThreadPoolExecutor(4) as pool:
        plan_ids = set(pool.map(lambda _: score(), range(4)))
    with database.session() as session:
        stored = session.scalars(select(Plan.id).where(Plan.commit_id == commit_id)).all()
    assert len(stored) == 1
    assert plan_ids == set(stored)


# A map learnt elsewhere (scheduler.risk.calibration): a score of 0.5 or more
# fails 40% of the time, below it 1%.
STEP = Calibration(ISOTONIC, knots=(0.0, 0.49, 0.5, 1.0), values=(0.01, 0.01, 0.4, 0.4))


def test_a_model_s_scores_are_served_through_its_calibration(
    database: Database, repository: int
) -> None:
    model_id = planning_data.add_model(database, repository)
    with database.session() as session:
        session.get_one(RiskModel, model_id).metrics = {"calibration": STEP.as_json()}
    commit_id = new_commit(database, repository, "src/net.py")
    with database.session() as session:
        plan = scoring.score_commit(session, commit_id, cache=scoring.ModelCache())
        assert plan is not None
        assert plan.status is PlanStatus.READY
        plan_id = plan.id
    items = plan_items(database, plan_id)
    vectors = np.stack([np.frombuffer(features, dtype="<f4") for *_, features, _ in items])
    loaded = load_model(planning_data.synthetic_model())
    raw = loaded.predict(loaded.inputs(FeatureMatrix(("",) * len(vectors), vectors)))
    assert [probability for _, probability, *_ in items] == pytest.approx(
        STEP.apply(raw).tolist(), abs=1e-9
    )


def score_after_a_refused_training(
    database: Database,
    repository: int,
    metrics: dict[str, Any],
    *,
    new_test: str | None = None,
) -> scoring.Scores:
    """A training's record with these metrics, not promoted (the heuristic
    still serves), then the scores of a new commit; `new_test` is a test
    riskrank knows by name and has never seen run."""
    model_id = planning_data.add_model(database, repository)
    with database.session() as session:
        record = session.get_one(RiskModel, model_id)
        record.status = ModelStatus.CANDIDATE  # trained, not promoted
        record.metrics = metrics
        if new_test is not None:
            session.add(KnownTest(repository_id=repository, name=new_test))
    commit_id = new_commit(database, repository, "src/net.py")
    with database.session() as session:
        return scoring.score_tests(
            session,
            repository_id=repository,
            commit_id=commit_id,
            at=datetime.now(UTC),
            cache=scoring.ModelCache(),
        )


def test_the_heuristic_is_served_through_the_map_its_repository_learnt(
    database: Database, repository: int
) -> None:
    """Without an active model, the heuristic's 0.01-plus-weights become
    probabilities through the map the newest training learnt for it; a test
    new to riskrank gets the repository's failure rate of new tests."""
    scores = score_after_a_refused_training(
        database,
        repository,
        {"heuristic_calibration": STEP.as_json()},
        new_test="tests/test_new.py::test_it",
    )
    assert scores.model is None
    assert scores.calibration == STEP
    raw = heuristic_scores(scores.matrix)
    is_new = scores.matrix.column("is_new") == 1.0
    assert is_new.sum() == 1
    rate = float(scores.matrix.column("new_test_rate")[0])
    assert scores.probabilities[is_new].tolist() == [rate]
    assert scores.probabilities[~is_new] == pytest.approx(STEP.apply(raw[~is_new]), abs=1e-9)
    assert scores.new_test_probability == rate


def new_first_model() -> str:
    """ "New first, then recently failed" as the choice serves it: a model
    of new_or_recent alone, monotone. New tests (1.0) fail 20% of the
    time, tests red in their last build (1/3) 80%, the others 1%: the
    monotone fit gives the new tests at least the red ones' score."""
    rng = np.random.default_rng(5)
    rows = 6000
    values = np.zeros((rows, len(FEATURE_NAMES)), dtype=np.float32)
    kind = rng.choice(3, size=rows, p=[0.1, 0.1, 0.8])
    values[:, FEATURE_NAMES.index("new_or_recent")] = np.array([1.0, 1.0 / 3.0, 0.0])[kind]
    labels = rng.random(rows) < np.array([0.2, 0.8, 0.01])[kind]
    scorer = choice.candidate("new first, then recently failed")
    return train_model(
        values,
        labels,
        np.repeat(np.arange(rows // 30), 30),
        FEATURE_NAMES,
        params=scorer.training_params(),
        exclude=scorer.excluded(FEATURE_NAMES),
    ).model_text


def test_a_plan_runs_its_tests_in_the_scorers_order_whatever_the_new_tests_rate(
    database: Database, repository: int
) -> None:
    """The plan's ranks are the scorer's order, not its probabilities'. A
    new test's probability is the repository's rate of new tests, below the
    red test's, but "new first" runs it first; a collected test the plan
    never saw goes where the scorer puts an unseen test (after the new test
    it knows, the same score and new both); then the red test, then the
    rest in the test order."""
    planning_data.add_model(database, repository, text=new_first_model())
    new = "tests/test_new.py::test_it"
    with database.session() as session:
        session.add(KnownTest(repository_id=repository, name=new))
    commit_id = new_commit(database, repository, "src/net.py")
    with database.session() as session:
        plan = scoring.score_commit(session, commit_id, cache=scoring.ModelCache())
        assert plan is not None
        assert plan.payload is not None
        payload = Payload.decode(plan.payload)
        plan_id = plan.id
    by_rank = sorted(plan_items(database, plan_id), key=lambda item: item[2])
    assert [(name, rank) for name, _, rank, *_ in by_rank] == [
        (new, 1),
        (TESTS[2], 2),
        (TESTS[0], 3),
        (TESTS[1], 4),
    ]
    probability = {name: p for name, p, *_ in by_rank}
    # The three tests came with the first report: no new test yet, the prior.
    rate = NEW_TEST_PRIOR
    assert probability[new] == pytest.approx(rate)
    assert probability[TESTS[2]] > probability[new]  # the red test is likelier to fail
    assert (payload.new_test_rank, payload.new_test_probability) == (1, pytest.approx(rate))
    fresh = "tests/test_fresh.py::test_it"
    covered = plans.cover(
        plans.Items(payload, Stats.of_payload(payload, None)), [*TESTS, new, fresh], 2
    )
    for policy in (Policy(), Policy(mode="fraction", budget=0.2)):
        decision = decide(covered.candidates, policy, Context())
        assert [covered.candidates.names[i] for i in decision.order.tolist()] == [
            new,
            fresh,
            TESTS[2],
            TESTS[0],
            TESTS[1],
        ]
    # Where a model puts an unseen test last, it runs last while new tests
    # fail no more often than the prior, and first once they do; the
    # heuristic's place for it stands whatever the rate.
    last = replace(payload, new_test_rank=len(payload))
    placed = [TESTS[2], TESTS[0], TESTS[1], fresh]
    for rate_of_new, by_model, expected in (
        (NEW_TEST_PRIOR, True, placed),
        (NEW_TEST_PRIOR + 0.05, True, [fresh, TESTS[2], TESTS[0], TESTS[1]]),
        (NEW_TEST_PRIOR + 0.05, False, placed),
    ):
        shown = replace(last, new_test_probability=rate_of_new)
        covered = plans.cover(
            plans.Items(shown, Stats.of_payload(shown, None)),
            [*TESTS, fresh],
            2,
            by_model=by_model,
        )
        decision = decide(covered.candidates, Policy(), Context())
        assert [covered.candidates.names[i] for i in decision.order.tolist()] == expected


def test_equal_scores_go_new_first_then_recently_failed_then_younger() -> None:
    """Ties in a plan: the higher new_or_recent, then the fewer runs (a
    test that never failed fails for the first time more often while it is
    young), then the test order."""
    values = np.zeros((5, len(FEATURE_NAMES)), dtype=np.float32)
    values[:, FEATURE_NAMES.index("new_or_recent")] = [0.0, 0.0, 0.2, 0.0, 1.0]
    values[:, FEATURE_NAMES.index("log_runs")] = np.log1p([40.0, 3.0, 50.0, 3.0, 0.0])
    matrix = FeatureMatrix(tuple("abcde"), values)
    assert scoring.ranks(np.full(5, 0.01), matrix).tolist() == [5, 3, 2, 4, 1]
    assert scoring.ranks(np.array([0.5, 0.01, 0.01, 0.01, 0.01]), matrix).tolist() == [
        1,
        4,
        3,
        5,
        2,
    ]


@pytest.mark.parametrize("younger_first", [True, False])
def test_plans_and_the_scorer_choice_break_ties_alike(younger_first: bool) -> None:
    """The tie is written twice: `scoring.ranks` orders plans, and
    `choice.plan_tie` with `served_order` orders the builds on which a
    scorer is chosen and a model promoted. They must give the same order,
    row for row, or the choice would be made on an order no plan serves:
    scores of few distinct values (as a simple ordering served as a model
    gives) over tests equal in one key, the other or both."""
    rng = np.random.default_rng(7)
    size = 400
    values = np.zeros((size, len(FEATURE_NAMES)), dtype=np.float32)
    values[:, FEATURE_NAMES.index("new_or_recent")] = rng.choice([0.0, 0.25, 0.5, 1.0], size)
    values[:, FEATURE_NAMES.index("log_runs")] = np.log1p(rng.choice([0.0, 3.0, 9.0, 40.0], size))
    matrix = FeatureMatrix(tuple(f"t{i}" for i in range(size)), values)
    scores = rng.choice([0.001, 0.01, 0.02, 0.3], size)
    plans = scoring.ranks(scores, matrix, younger_first=younger_first)
    tie = choice.plan_tie(values, FEATURE_NAMES, younger_first=younger_first)
    served = choice.served_order(scores, tie, np.zeros(size, dtype=np.int64))
    assert np.argsort(plans).tolist() == np.argsort(-served).tolist()


def test_a_repository_whose_training_chose_so_keeps_equal_scores_in_the_order_first_seen(
    database: Database, repository: int
) -> None:
    """Where the newest training found the order first seen better than the
    younger first (scheduler.risk.choice.choose_tie), the plan's ties keep
    the test order; without that record the younger go first."""
    values = np.zeros((3, len(FEATURE_NAMES)), dtype=np.float32)
    values[:, FEATURE_NAMES.index("log_runs")] = np.log1p([40.0, 3.0, 9.0])
    matrix = FeatureMatrix(tuple("abc"), values)
    assert scoring.ranks(np.full(3, 0.01), matrix).tolist() == [3, 1, 2]
    assert scoring.ranks(np.full(3, 0.01), matrix, younger_first=False).tolist() == [1, 2, 3]
    with database.session() as session:
        assert scoring.learnt_for(session, repository_id=repository, record=None) == (None, True)
    scores = score_after_a_refused_training(
        database, repository, {"tie": choice.TieChoice(False, 0.5, 0.6, 9).as_json()}
    )
    assert scores.model is None
    assert not scores.younger_first
    raw = heuristic_scores(scores.matrix)
    expected = scoring.ranks(raw, scores.matrix, younger_first=False)
    assert scores.ranks().tolist() == expected.tolist()


def test_new_test_rank_counts_the_tests_the_scorer_puts_first() -> None:
    """Higher scores, and equal scores of tests that never ran (the plan's
    ties go new first); the rest come after."""
    values = np.zeros((5, len(FEATURE_NAMES)), dtype=np.float32)
    values[:, FEATURE_NAMES.index("new_or_recent")] = [0.0, 1.0, 0.4, 0.2, 1.0]
    matrix = FeatureMatrix(tuple("abcde"), values)
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    assert scoring.ranks(scores, matrix).tolist() == [1, 2, 3, 4, 5]
    assert scoring.new_test_rank(scores, matrix, 0.5) == 2
    assert scoring.new_test_rank(scores, matrix, 0.95) == 0
    assert scoring.new_test_rank(scores, matrix, 0.05) == 5
    assert scoring.new_test_rank(np.zeros(0), FeatureMatrix((), values[:0]), 0.5) == 0
