"""Choosing a repository's scorer on its own history: the candidate that
orders the newer builds best wins, ties go to the simpler one, the budget
stops the trials, and a history without failures there chooses nothing."""

import itertools

import numpy as np
import pytest

from scheduler.risk.choice import (
    CANDIDATES,
    Candidate,
    TieChoice,
    choose,
    choose_tie,
    plan_tie,
    served_order,
)
from scheduler.risk.training import build_apfds

NAMES = ("fail_rate_all", "own_file_changed", "noise")

ORDERING = Candidate(
    "failure rate",
    "by failure rate",
    {"num_leaves": 2, "max_depth": 1, "min_data_in_leaf": 20},
    ("fail_rate_all",),
    +1,
)
MODEL = Candidate("additive model", "every feature")


def history(seed: int = 3, change: float = 6.0) -> tuple[np.ndarray, ...]:
    """80 builds of 40 tests: a failure rate that matters a little and a
    changed own file that matters a lot (`change`, as a logit)."""
    rng = np.random.default_rng(seed)
    builds = np.repeat(np.arange(80), 40)
    n = builds.size
    features = np.column_stack(
        [rng.beta(0.5, 10.0, size=n), rng.random(n) < 0.05, rng.normal(size=n)]
    )
    logit = -5.5 + 10.0 * features[:, 0] + change * features[:, 1]
    failed = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    return features, failed, builds


def test_the_candidate_that_orders_the_newer_builds_best_is_chosen() -> None:
    features, failed, builds = history()
    picked = choose(features, failed, builds, NAMES, candidates=(ORDERING, MODEL))
    assert picked.chosen is MODEL
    ordering, model = picked.trials
    assert ordering.mean_apfd is not None
    assert model.mean_apfd is not None
    assert model.mean_apfd > ordering.mean_apfd + 0.05
    # Scored on the newest quarter of the builds only, and the same ones for both.
    assert (picked.first_build, picked.last_build) == (60, 79)
    assert np.array_equal(ordering.builds, model.builds)
    assert ordering.builds.min() >= 60
    assert picked.as_json()["chosen"] == "additive model"
    assert [trial["name"] for trial in picked.as_json()["trials"]] == [
        "failure rate",
        "additive model",
    ]


def test_a_tie_goes_to_the_earlier_simpler_candidate() -> None:
    # Without the changed file's effect, the failure rate is all there is:
    # the same candidate twice scores the same, and the first is chosen.
    features, failed, builds = history(change=0.0)
    twin = Candidate("failure rate again", "the same", ORDERING.params, ORDERING.features, +1)
    picked = choose(features, failed, builds, NAMES, candidates=(ORDERING, twin))
    assert picked.trials[0].mean_apfd == picked.trials[1].mean_apfd
    assert picked.chosen is ORDERING


def test_the_budget_stops_the_trials() -> None:
    features, failed, builds = history()
    ticks = itertools.count(step=50.0)  # every reading of the clock is 50 s later
    picked = choose(
        features,
        failed,
        builds,
        NAMES,
        candidates=(ORDERING, MODEL),
        budget_seconds=60.0,
        clock=lambda: next(ticks),
    )
    assert [trial.name for trial in picked.trials] == ["failure rate"]
    assert picked.skipped == ("additive model",)
    assert picked.chosen is ORDERING


def test_a_candidate_that_cannot_train_is_reported_not_chosen() -> None:
    features, failed, builds = history()
    absent = Candidate("missing feature", "reads a feature the rows lack", {}, ("absent",), +1)
    picked = choose(features, failed, builds, NAMES, candidates=(absent, ORDERING))
    assert picked.trials[0].error is not None
    assert "excluded" in picked.trials[0].error
    assert picked.chosen is ORDERING


def test_no_failing_build_to_score_chooses_nothing() -> None:
    features, failed, builds = history()
    failed = failed & (builds < 60)  # the newest quarter never fails
    picked = choose(features, failed, builds, NAMES, candidates=(ORDERING, MODEL))
    assert picked.chosen is None
    assert all(trial.mean_apfd is None for trial in picked.trials)


def test_every_simple_ordering_reads_one_feature_in_one_direction() -> None:
    for each in CANDIDATES:
        if each.ordering:
            assert each.features is not None
            assert len(each.features) == 1
            assert each.training_params()["monotone_constraints"] == [each.direction]
        else:
            assert "monotone_constraints" not in each.training_params()


def test_equal_scores_are_ordered_as_a_plan_orders_them() -> None:
    """A simple ordering's model gives a step of its order one score; a
    plan breaks the tie by new_or_recent (higher first), and so do the
    choice and the promotion (`served_order`): here the failing test of
    build 0 ties with two passing ones and runs first, where the rows'
    order would put it last."""
    names = ("new_or_recent", "log_runs")
    features = np.array(
        [[0.1, 2.0], [0.2, 2.0], [0.5, 2.0], [np.nan, 3.0], [1.0, 0.0], [0.0, 3.0]],
        dtype=np.float32,
    )
    tie = plan_tie(features, names)
    # By new_or_recent (higher first), then log_runs (lower first); rows 3
    # and 5 are equal in both and share a place.
    assert tie.tolist() == [3.0, 2.0, 1.0, 4.0, 0.0, 4.0]
    younger = features.copy()
    younger[5, 1] = 1.0  # never failed, fewer runs: before row 3
    assert plan_tie(younger, names).tolist() == [3.0, 2.0, 1.0, 5.0, 0.0, 4.0]
    # Without the younger first, rows 3 and 5 share a place again.
    assert plan_tie(younger, names, younger_first=False).tolist() == tie.tolist()
    assert plan_tie(features, ("a", "b")).tolist() == [0.0] * 6
    scores = np.array([0.3, 0.3, 0.3, 0.9, 0.3, 0.3])
    builds = np.array([0, 0, 0, 1, 1, 1])
    failed = np.array([False, False, True, False, True, False])
    served = served_order(scores, tie, builds)
    # build 0: rows 2, 1, 0 (by new_or_recent); build 1: row 3 (0.9), then
    # 4 (new), then 5
    assert np.argsort(-served, kind="stable").tolist() == [2, 1, 0, 3, 4, 5]
    assert build_apfds(served, failed, builds)[1].tolist() == pytest.approx(
        [1 - 1 / 3 + 1 / 6, 1 - 2 / 3 + 1 / 6]
    )
    assert build_apfds(scores, failed, builds)[1].tolist() == pytest.approx(
        [1 - 3 / 3 + 1 / 6, 1 - 2 / 3 + 1 / 6]
    )


def tie_history(young_fail: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """20 builds of 4 tests that never failed, all scored alike: rows 0 and
    1 old (50 runs), rows 2 and 3 young (2 runs). The failing test is
    young (`young_fail`) or the first old one."""
    names_runs = np.log1p(np.array([50.0, 50.0, 2.0, 2.0]))
    features = np.column_stack([np.zeros(80), np.tile(names_runs, 20)])
    failing = 3 if young_fail else 0
    failed = np.tile(np.arange(4) == failing, 20)
    return features, failed, np.repeat(np.arange(20), 4)


def test_the_tie_puts_the_younger_first_unless_the_order_first_seen_is_better() -> None:
    """Equal scores: the younger test first (the default) unless, on the
    builds given, the order first seen finds the failures earlier; and
    without a failing build, the default stays."""
    names = ("new_or_recent", "log_runs")
    scores = np.full(80, 0.01)
    features, failed, builds = tie_history(young_fail=True)
    young = choose_tie(scores, features, failed, builds, names)
    # Younger first: the failing row 3 runs second (rows 2, 3, then 0, 1);
    # first seen first: fourth.
    assert young == TieChoice(True, 1 - 2 / 4 + 1 / 8, 1 - 4 / 4 + 1 / 8, 20)
    features, failed, builds = tie_history(young_fail=False)
    seen = choose_tie(scores, features, failed, builds, names)
    assert seen == TieChoice(False, 1 - 3 / 4 + 1 / 8, 1 - 1 / 4 + 1 / 8, 20)
    assert TieChoice.from_json(seen.as_json()) == seen
    assert TieChoice.from_json(None) is None
    quiet = choose_tie(scores, features, np.zeros(80, dtype=bool), builds, names)
    assert quiet == TieChoice(True, None, None, 0)
