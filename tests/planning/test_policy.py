"""The policy alone: pure functions on arrays, every rule, the exploration
sample's logged probabilities, and the shards' balance."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from scheduler.planning import policy as policies
from scheduler.planning.policy import (
    DEFAULT_FULL_RUN_PATHS,
    Candidates,
    Context,
    Policy,
    PolicyError,
    Rule,
    Shard,
    decide,
    expected_durations,
    full_run_path,
    reason,
    rule_sentence,
    shards,
    trimmed_share,
    unsaid,
)

NAMES = [f"tests/test_{i}.py::test_{i}" for i in range(6)]


def names_of(candidates: Candidates, indexes: np.ndarray) -> list[str]:
    return [candidates.names[i] for i in indexes.tolist()]


def plain(n: int = 6, **fields: object) -> Candidates:
    """n tests of 1 s each, probabilities falling with the index."""
    values: dict[str, object] = {
        "probability": [0.9 - 0.1 * i for i in range(n)],
        "duration": [1.0] * n,
    }
    values.update(fields)
    return Candidates.of(NAMES[:n] if n <= 6 else [f"t{i}" for i in range(n)], **values)  # type: ignore[arg-type]


# --- order ------------------------------------------------------------------------


def test_order_counts_what_the_budget_counts() -> None:
    """Tests (the default): the highest probability first. Seconds (a time
    budget, or by duration): the highest probability per second first."""
    candidates = Candidates.of(
        ["slow", "fast", "faster"],
        [0.5, 0.2, 0.1],
        duration=[10.0, 1.0, 0.2],  # 0.05/s, 0.2/s, 0.5/s
    )
    for policy in (
        Policy(),
        Policy(mode="fraction", budget=1.0),
        Policy(mode="confidence", budget=1.0),
    ):
        by_tests = decide(candidates, policy, Context())
        assert names_of(candidates, by_tests.run_order()) == ["slow", "fast", "faster"]
    for policy in (
        Policy(by="duration", overhead=0.0),
        Policy(mode="time", budget=100, overhead=0.0),
    ):
        by_time = decide(candidates, policy, Context())
        assert names_of(candidates, by_time.run_order()) == ["faster", "fast", "slow"]


def test_order_is_probability_per_second() -> None:
    candidates = Candidates.of(
        ["slow", "fast", "faster"],
        [0.5, 0.2, 0.1],
        duration=[10.0, 1.0, 0.2],  # 0.05/s, 0.2/s, 0.5/s
    )
    decision = decide(candidates, Policy(by="duration", overhead=0.0), Context())
    assert names_of(candidates, decision.run_order()) == ["faster", "fast", "slow"]
    assert decision.ranks.tolist() == [3, 2, 1]
    assert decision.selected.all()
    assert decision.rules == [Rule.MODEL] * 3


def test_the_seconds_include_a_per_test_overhead_the_median_by_default() -> None:
    candidates = Candidates.of(
        ["slow", "fast", "faster"],
        [0.5, 0.2, 0.1],
        duration=[10.0, 1.0, 0.2],  # median 1 s: 0.5/11, 0.2/2, 0.1/1.2 per second
    )
    decision = decide(candidates, Policy(by="duration"), Context())
    assert names_of(candidates, decision.run_order()) == ["fast", "faster", "slow"]
    given = decide(candidates, Policy(by="duration", overhead=20.0), Context())
    assert names_of(candidates, given.run_order()) == ["slow", "fast", "faster"]


def test_tests_measured_at_zero_seconds_do_not_jump_the_queue() -> None:
    """Divided by a duration floored at 1 ms, a test of 0 s with a sliver of
    risk would run before one twenty times as likely to fail."""
    candidates = Candidates.of(
        ["risky", "instant", "quick"],
        [0.2, 0.01, 0.05],
        duration=[1.0, 0.0, 0.5],
    )
    by_time = Policy(by="duration")
    assert names_of(candidates, decide(candidates, by_time, Context()).run_order()) == [
        "risky",
        "quick",
        "instant",
    ]
    bare = decide(candidates, Policy(by="duration", overhead=0.0), Context())
    assert names_of(candidates, bare.run_order())[0] == "instant"


def test_overhead_must_be_seconds() -> None:
    with pytest.raises(PolicyError, match="overhead is seconds"):
        Policy(overhead=-1.0).checked()
    with pytest.raises(PolicyError, match=r"exploration_rate must be 0\.\.1"):
        Policy(exploration_rate=2.0).checked()  # checked in order mode too


def test_ties_go_by_probability_then_new_then_the_plans_rank() -> None:
    # The plan's ranks (draw: the stored rank - 1) already break scoring's
    # ties as "new first, then recently failed"; the policy keeps them.
    candidates = Candidates.of(
        ["a", "b", "c", "d", "e", "f"],
        [0.1, 0.2, 0.2, 0.2, 0.2, 0.2],
        duration=[0.5, 1.0, 1.0, 1.0, 1.0, 1.0],  # all 0.2 per second
        builds_since_failure=[None, None, 7, 2, 2, None],
        is_new=[False, False, False, False, False, True],
        draw=[5, 4, 3, 1, 2, 0],
    )
    for policy in (Policy(), Policy(by="duration", overhead=0.0)):
        decision = decide(candidates, policy, Context())
        # a has the same rate per second but the lower probability; f is new
        # (first among equals even when a collected test has no rank); then
        # by rank: d, e, c, b.
        assert names_of(candidates, decision.order) == ["f", "d", "e", "c", "b", "a"]
    unranked = Candidates.of(["x", "y", "z"], [0.2, 0.2, 0.2], is_new=[False, True, False])
    decision = decide(unranked, Policy(), Context())
    assert names_of(unranked, decision.order) == ["y", "x", "z"]  # then the order given


def test_counting_tests_the_scorers_place_orders_not_the_probability() -> None:
    """A plan's tests run in their scorer's order (`place`) when the budget
    counts tests: a new test's probability is the repository's rate of new
    tests (0.2), below the test red in its last build (0.8), but a scorer
    that puts new tests first runs it first; two new tests at one place
    keep the order given. Counting seconds, the probability per second."""
    candidates = replace(
        Candidates.of(
            ["red", "new", "quiet", "newer"],
            [0.8, 0.2, 0.05, 0.2],
            duration=[1.0, 1.0, 1.0, 1.0],
            is_new=[False, True, False, True],
        ),
        place=np.array([1.0, -0.5, 2.0, -0.5]),
    )
    for policy in (Policy(), Policy(mode="fraction", budget=0.5)):
        decision = decide(candidates, policy, Context())
        assert names_of(candidates, decision.order) == ["new", "newer", "red", "quiet"]
    by_time = decide(candidates, Policy(by="duration", overhead=0.0), Context())
    assert names_of(candidates, by_time.order) == ["red", "new", "newer", "quiet"]
    # Without places (a plan stored before them): by probability.
    unplaced = replace(candidates, place=None)
    decision = decide(unplaced, Policy(), Context())
    assert names_of(unplaced, decision.order) == ["red", "new", "newer", "quiet"]


def test_where_new_tests_fail_often_they_run_first_in_any_order() -> None:
    """A repository whose new tests fail more often than the prior
    (`new_first`) runs them before every other test, whatever the scorer's
    place for them or their probability per second; the rest keep theirs."""
    candidates = replace(
        Candidates.of(
            ["red", "new", "quiet", "newer"],
            [0.8, 0.2, 0.05, 0.3],
            duration=[1.0, 50.0, 1.0, 1.0],
            is_new=[False, True, False, True],
        ),
        place=np.array([0.0, 2.5, 1.0, 2.5]),  # a model that puts new tests last
    )
    placed = decide(candidates, Policy(), Context())
    assert names_of(candidates, placed.order) == ["red", "quiet", "new", "newer"]
    first = replace(candidates, new_first=True)
    for policy in (Policy(), Policy(mode="fraction", budget=0.5), Policy(by="duration")):
        decision = decide(first, policy, Context())
        assert names_of(first, decision.order)[2:] == ["red", "quiet"]
        assert set(names_of(first, decision.order)[:2]) == {"new", "newer"}
    # Among themselves the new tests keep the order's rule: the scorer's
    # place (a tie: as given), or the probability per second.
    assert names_of(first, decide(first, Policy(), Context()).order)[:2] == ["new", "newer"]
    by_time = decide(first, Policy(by="duration", overhead=0.0), Context())
    assert names_of(first, by_time.order)[:2] == ["newer", "new"]
    unplaced = replace(first, place=None)
    assert names_of(unplaced, decide(unplaced, Policy(), Context()).order) == [
        "newer",
        "new",
        "red",
        "quiet",
    ]


def test_unknown_duration_is_the_median_of_the_known_or_one_second() -> None:
    durations = expected_durations(np.array([1.0, math.nan, 3.0, 10.0, 0.0]))
    assert durations.tolist() == [1.0, 2.0, 3.0, 10.0, 0.001]
    assert expected_durations(np.array([math.nan, math.nan])).tolist() == [1.0, 1.0]


# --- budgets ----------------------------------------------------------------------


def test_time_budget_keeps_a_prefix_of_the_order() -> None:
    candidates = plain(6, duration=[1.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    # priorities: 0.9, 0.4, 0.7, 0.6, 0.5, 0.4 per second
    decision = decide(candidates, Policy(mode="time", budget=3.5, exploration_rate=0), Context())
    assert names_of(candidates, decision.run_order()) == [NAMES[0], NAMES[2], NAMES[3]]
    assert decision.rules[1] is Rule.BUDGET
    assert decision.rules[0] is Rule.MODEL
    assert decision.duration_dropped() == 2.0 + 1.0 + 1.0


def test_forced_tests_use_the_budget_first() -> None:
    candidates = plain(6, is_new=[False, False, False, False, True, True])
    decision = decide(
        candidates, Policy(mode="time", budget=3.0, exploration_rate=0, inclusive=False), Context()
    )
    assert decision.selected.tolist() == [True, False, False, False, True, True]
    assert decision.rules[4] is Rule.NEW
    assert decision.rules[5] is Rule.NEW
    # More forced than the budget: they all run, nothing else does.
    over = decide(
        candidates, Policy(mode="time", budget=1.0, exploration_rate=0, inclusive=False), Context()
    )
    assert over.selected.tolist() == [False, False, False, False, True, True]


def test_fraction_of_the_tests_rounds_up() -> None:
    decision = decide(plain(6), Policy(mode="fraction", budget=0.3, exploration_rate=0), Context())
    assert int(decision.selected.sum()) == 2  # ceil(1.8)
    none = decide(plain(6), Policy(mode="fraction", budget=0.0, exploration_rate=0), Context())
    assert not none.selected.any()


def test_fraction_of_the_duration() -> None:
    candidates = plain(4, probability=[0.4, 0.3, 0.2, 0.1], duration=[1.0, 1.0, 1.0, 7.0])
    decision = decide(
        candidates,
        Policy(mode="fraction", budget=0.3, by="duration", exploration_rate=0, inclusive=False),
        Context(),
    )
    # 30% of 10 s: the first three tests, 3 s.
    assert decision.selected.tolist() == [True, True, True, False]


def test_confidence_keeps_tests_until_the_share_of_expected_failures() -> None:
    candidates = plain(4, probability=[0.5, 0.3, 0.15, 0.05])
    decide_at = lambda target: decide(  # noqa: E731
        candidates, Policy(mode="confidence", budget=target, exploration_rate=0), Context()
    ).selected.tolist()
    assert decide_at(0.5) == [True, False, False, False]  # 0.5 of 1.0 reached
    assert decide_at(0.51) == [True, True, False, False]
    assert decide_at(0.95) == [True, True, True, False]
    assert decide_at(0.96) == [True, True, True, True]
    assert decide_at(0.0) == [False, False, False, False]


def test_confidence_counts_forced_tests() -> None:
    candidates = plain(4, probability=[0.5, 0.3, 0.15, 0.05], recent=["", "", "", "F"])
    decision = decide(
        candidates, Policy(mode="confidence", budget=0.55, exploration_rate=0), Context()
    )
    assert decision.selected.tolist() == [True, False, False, True]
    assert decision.expected_failures_dropped(candidates.probability) == pytest.approx(0.45)


def test_confidence_counts_what_the_exploration_sample_keeps() -> None:
    # Half of what the budget drops runs anyway: keeping 0.5 of the expected
    # failures up front keeps 0.5 + 0.5 * 0.5 = 0.75 of them on average.
    candidates = plain(4, probability=[0.5, 0.3, 0.15, 0.05])
    decision = decide(
        candidates, Policy(mode="confidence", budget=0.75, exploration_rate=0.5), Context()
    )
    prefix = [rule is Rule.MODEL for rule in decision.rules]
    assert prefix == [True, False, False, False]
    # A little more than that needs the second test.
    decision = decide(
        candidates, Policy(mode="confidence", budget=0.76, exploration_rate=0.5), Context()
    )
    assert [rule is Rule.MODEL for rule in decision.rules] == [True, True, False, False]


def test_confidence_on_calibrated_probabilities_keeps_its_share_of_failures() -> None:
    # Probabilities that hold (outcomes drawn from them): over many builds,
    # the plans keep the target share of the failures, with the fewest tests.
    rng = np.random.default_rng(11)
    for target in (0.8, 0.9):
        kept = failures = ran = 0
        for _ in range(300):
            probability = rng.beta(0.2, 8.0, 200)
            failed = rng.random(200) < probability
            decision = decide(
                plain(200, probability=probability.tolist()),
                Policy(mode="confidence", budget=target, exploration_rate=0.05),
                Context(seed=int(rng.integers(1 << 30))),
            )
            kept += int(failed[decision.selected].sum())
            failures += int(failed.sum())
            ran += int(decision.selected.sum())
            assert any(rule is Rule.MODEL for rule in decision.rules)  # never nothing
        assert kept / failures == pytest.approx(target, abs=0.02)
        assert ran / (300 * 200) < target


def test_confidence_without_any_probability_runs_everything() -> None:
    candidates = plain(3, probability=[0.0, 0.0, 0.0])
    decision = decide(
        candidates, Policy(mode="confidence", budget=0.8, exploration_rate=0), Context()
    )
    assert decision.selected.all()


# --- rules that force a test in ---------------------------------------------------


def test_every_forcing_rule_labels_its_tests() -> None:
    candidates = Candidates.of(
        ["tests/smoke/test_boot.py::test_up", "n", "o", "r", "plain", "both"],
        [0.0, 0.0, 0.0, 0.0, 0.9, 0.0],
        duration=[1.0] * 6,
        is_new=[False, True, False, False, False, True],
        own_file_changed=[False, False, True, False, False, True],
        recent=["PPP", "", "", "PFP", "", ""],
    )
    policy = Policy(
        mode="fraction",
        budget=0.0,
        exploration_rate=0,
        must_run=("tests/smoke/*", "*::test_nothing"),
    )
    decision = decide(candidates, policy, Context())
    assert decision.rules == [
        Rule.MUST_RUN,
        Rule.NEW,
        Rule.OWN_FILE_CHANGED,
        Rule.RECENTLY_FAILED,
        Rule.BUDGET,
        Rule.NEW,  # new outranks own file changed
    ]
    assert decision.selected.tolist() == [True, True, True, True, False, True]
    assert decision.propensity.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 1.0]
    assert reason(decision, 0, None) == "Must run (matches tests/smoke/*)"
    assert reason(decision, 3, "Failed 1 of its last 3 runs") == (
        "Failed in one of its last 2 runs. Failed 1 of its last 3 runs"
    )


def test_recent_failures_window_is_configurable() -> None:
    candidates = plain(3, recent=["PPF", "PE", "FPP"])
    dropped_all = Policy(mode="fraction", budget=0.0, exploration_rate=0, recent_failures=1)
    assert decide(candidates, dropped_all, Context()).selected.tolist() == [False, False, True]
    three = Policy(mode="fraction", budget=0.0, exploration_rate=0, recent_failures=3)
    assert decide(candidates, three, Context()).selected.tolist() == [True, True, True]
    off = Policy(mode="fraction", budget=0.0, exploration_rate=0, recent_failures=0)
    assert not decide(candidates, off, Context()).selected.any()


# --- full runs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["src/app.py", "poetry.lock"], "poetry.lock"),
        (["web/package-lock.json"], "web/package-lock.json"),
        (["requirements-dev.txt"], "requirements-dev.txt"),
        ([".github/workflows/ci.yml"], ".github/workflows/ci.yml"),
        (["docs/.github/workflows/ci.yml"], None),  # a "/" glob matches the whole path
        (["services/api/go.sum"], "services/api/go.sum"),
        (["src/app.py", "README.md"], None),
        ([], None),
    ],
)
def test_changes_the_model_cannot_reason_about(paths: list[str], expected: str | None) -> None:
    assert full_run_path(paths, DEFAULT_FULL_RUN_PATHS) == expected


def test_full_run_on_a_lock_file_selects_everything() -> None:
    candidates = plain(6)
    decision = decide(
        candidates,
        Policy(mode="fraction", budget=0.1),
        Context(changed_paths=["src/x.py", "yarn.lock"]),
    )
    assert decision.full_run_reason == "the change touches yarn.lock"
    assert decision.selected.all()
    assert decision.rules == [Rule.FULL_RUN] * 6
    assert decision.propensity.tolist() == [1.0] * 6
    assert reason(decision, 0, None) == "Full run: the change touches yarn.lock"


def test_every_nth_build_of_the_default_branch_runs_everything() -> None:
    policy = Policy(mode="fraction", budget=0.1, full_run_every=5)
    runs = [
        decide(plain(6), policy, Context(default_branch_build=build)).full_run
        for build in range(1, 11)
    ]
    assert runs == [False, False, False, False, True] * 2
    assert not decide(plain(6), policy, Context(default_branch_build=None)).full_run
    never = Policy(mode="fraction", budget=0.1, full_run_every=0)
    assert not decide(plain(6), never, Context(default_branch_build=5)).full_run


# --- exploration ------------------------------------------------------------------


def test_exploration_logs_the_rate_as_propensity_of_every_dropped_test() -> None:
    candidates = plain(200, probability=np.linspace(0.5, 0.0, 200), duration=[1.0] * 200)
    policy = Policy(mode="fraction", budget=0.1, exploration_rate=0.2, inclusive=False)
    decision = decide(candidates, policy, Context(seed=3))
    kept = [rule in (Rule.MODEL,) for rule in decision.rules]
    assert sum(kept) == 20
    over = ~np.array(kept)
    assert set(decision.propensity[np.array(kept)].tolist()) == {1.0}
    assert set(decision.propensity[over].tolist()) == {0.2}
    explored = [rule is Rule.EXPLORATION for rule in decision.rules]
    assert decision.selected.tolist() == [k or e for k, e in zip(kept, explored, strict=True)]
    assert 0 < sum(explored) < 180


def test_exploration_is_deterministic_per_plan_and_per_test() -> None:
    candidates = plain(100, probability=np.linspace(0.5, 0.0, 100))
    policy = Policy(mode="fraction", budget=0.1, exploration_rate=0.3)
    first = decide(candidates, policy, Context(seed=17)).selected
    assert (decide(candidates, policy, Context(seed=17)).selected == first).all()
    assert (decide(candidates, policy, Context(seed=18)).selected != first).any()
    # A runner that collected only some of the tests gets the same draw for
    # each of them: the draw belongs to the test's place in the plan.
    subset = list(range(50, 100))
    part = Candidates.of(
        [candidates.names[i] for i in subset],
        candidates.probability[subset],
        duration=[1.0] * 50,
        draw=subset,
    )
    # the budget keeps none of 50..99 here except by exploration
    tight = Policy(mode="fraction", budget=0.0, exploration_rate=0.3)
    whole = decide(candidates, tight, Context(seed=17))
    sampled = decide(part, tight, Context(seed=17))
    assert sampled.selected.tolist() == whole.selected[subset].tolist()


def test_the_logged_propensity_is_the_empirical_selection_rate() -> None:
    """Over many plans (seeds), each dropped-by-budget test is selected as
    often as its logged propensity says: the log is what was used."""
    candidates = plain(50, probability=np.linspace(0.5, 0.01, 50))
    policy = Policy(mode="fraction", budget=0.2, exploration_rate=0.05, inclusive=False)
    seeds = 2000
    chosen = np.zeros(50)
    logged = np.zeros(50)
    for seed in range(seeds):
        decision = decide(candidates, policy, Context(seed=seed))
        chosen += decision.selected
        logged += decision.propensity
    empirical = chosen / seeds
    expected = logged / seeds
    # The 10 kept by the budget always run, with propensity 1.
    assert empirical[:10].tolist() == [1.0] * 10
    assert expected[:10].tolist() == [1.0] * 10
    assert expected[10:].tolist() == pytest.approx([0.05] * 40)
    # Each test: 2000 Bernoulli(0.05) draws, sd 0.0049; 5 sd either side.
    assert np.abs(empirical[10:] - 0.05).max() < 5 * math.sqrt(0.05 * 0.95 / seeds)
    # All of them together: 80,000 draws, sd 0.00077.
    assert abs(empirical[10:].mean() - 0.05) < 4 * math.sqrt(0.05 * 0.95 / (seeds * 40))


# --- shards -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_shards_are_disjoint_cover_the_selection_and_are_balanced(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    durations = rng.lognormal(0.0, 1.5, n)
    candidates = plain(
        n, probability=rng.random(n), duration=durations, is_new=rng.random(n) < 0.05
    )
    decision = decide(candidates, Policy(mode="fraction", budget=0.6), Context(seed=seed))
    run = decision.run_order()
    count = int(rng.integers(1, 9))
    parts = shards(run, decision.expected_duration, count)
    assert len(parts) == count
    together = np.concatenate(parts)
    assert sorted(together.tolist()) == sorted(run.tolist())  # cover, no duplicates
    assert len(set(together.tolist())) == len(together)
    loads = [float(decision.expected_duration[part].sum()) for part in parts]
    longest = float(decision.expected_duration[run].max())
    assert max(loads) - min(loads) <= longest + 1e-9
    position = {index: place for place, index in enumerate(run.tolist())}
    for part in parts:  # each shard keeps the run order
        places = [position[i] for i in part.tolist()]
        assert places == sorted(places)
    again = shards(run, decision.expected_duration, count)
    assert all((a == b).all() for a, b in zip(parts, again, strict=True))


def test_more_shards_than_tests_leaves_some_empty() -> None:
    candidates = plain(2)
    decision = decide(candidates, Policy(), Context())
    parts = shards(decision.run_order(), decision.expected_duration, 4)
    assert sorted(len(part) for part in parts) == [0, 0, 1, 1]


# --- parameters -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (Policy(mode="fast"), "mode must be one of order, time, fraction, confidence"),
        (Policy(mode="fraction", budget=1.5), "a fraction budget is a share from 0 to 1"),
        (Policy(mode="confidence", budget=-0.1), "a confidence budget is a share from 0 to 1"),
        (Policy(mode="time", budget=-1), "a time budget is seconds"),
        (Policy(mode="time"), "mode time needs a budget"),
        (Policy(mode="fraction", budget=0.3, by="lines"), "by must be one of tests, duration"),
        (Policy(mode="time", budget=math.inf), "finite"),
    ],
)
def test_bad_parameters_say_what_is_wrong(policy: Policy, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        decide(plain(2), policy, Context())


def test_order_mode_ignores_a_budget() -> None:
    assert Policy(mode="order", budget=3.0).checked().budget is None


@pytest.mark.parametrize("text", ["0/4", "5/4", "1-4", "a/b", "", "1/0"])
def test_shard_must_be_i_of_n(text: str) -> None:
    with pytest.raises(PolicyError, match="shard"):
        Shard.parse(text)


def test_shard_parses() -> None:
    assert Shard.parse(" 2/4 ") == Shard(2, 4)
    assert str(Shard(2, 4)) == "2/4"


@pytest.mark.parametrize(
    ("rule", "scored", "expected"),
    [
        (Rule.OWN_FILE_CHANGED, "Its own file changed", ""),
        (
            Rule.OWN_FILE_CHANGED,
            "Its own file changed; failed 2 of its last 5 runs",
            "Failed 2 of its last 5 runs",
        ),
        (
            Rule.RECENTLY_FAILED,
            "Failed 2 of its last 5 runs; failed in its last run",
            "Failed 2 of its last 5 runs",
        ),
        (
            Rule.RECENTLY_FAILED,
            "Failed in its last run; src/Net.py changed and failed together with it 2 times",
            "src/Net.py changed and failed together with it 2 times",
        ),
        (Rule.NEW, "Not in this commit's scores", ""),
        (Rule.NEW, "Is new to riskrank", ""),
        # Other rules, and phrases the sentence does not say, are kept as they are.
        (Rule.BUDGET, "Its own file changed", "Its own file changed"),
        (Rule.OWN_FILE_CHANGED, "Failed in its last run", "Failed in its last run"),
    ],
)
def test_a_reason_does_not_repeat_its_rule(rule: Rule, scored: str, expected: str) -> None:
    assert unsaid(rule, scored) == expected


# --- the budget is the budget ---------------------------------------------------------


def test_the_budget_pays_for_exploration_and_full_runs() -> None:
    # One build in 20 runs all; the others keep s and explore 5% of the rest:
    # (19/20) (s + 0.05 (1 - s)) + 1/20 = 0.33.
    share = trimmed_share(0.33, 0.05, 20)
    assert share == pytest.approx(((0.33 - 0.05) / 0.95 - 0.05) / 0.95)
    assert (19 / 20) * (share + 0.05 * (1 - share)) + 1 / 20 == pytest.approx(0.33)
    assert trimmed_share(0.33, 0.0, 0) == 0.33
    assert trimmed_share(0.04, 0.05, 20) == 0.0  # the full runs alone spend it
    assert trimmed_share(1.0, 0.05, 20) == 1.0
    assert trimmed_share(0.5, 0.05, 1) == 0.5  # every build runs all anyway


def test_a_fraction_is_what_runs_over_a_window_of_builds() -> None:
    candidates = plain(2000, probability=np.linspace(0.9, 0.0, 2000))
    policy = Policy(mode="fraction", budget=0.33)
    ran = [
        decide(candidates, policy, Context(default_branch_build=build, seed=build))
        for build in range(1, 201)
    ]
    share = sum(int(d.selected.sum()) for d in ran) / (200 * 2000)
    assert share == pytest.approx(0.33, abs=0.003)
    counts = ran[0].selected_by()
    assert counts["budget"] == math.ceil(trimmed_share(0.33, 0.05, 20) * 2000 - 1e-9)
    assert counts["exploration"] == int(ran[0].selected.sum()) - counts["budget"]
    assert (counts["escalation"], counts["full_run"]) == (0, 0)
    assert ran[19].selected_by() == {
        "budget": 0,
        "exploration": 0,
        "escalation": 0,
        "expansion": 0,
        "full_run": 2000,
    }
    # The budget's tests by why: here, the priority prefix alone; a full run's, none.
    assert ran[0].budget_by_rule() == {
        "must_run": 0, "new": 0, "own_file_changed": 0, "recently_failed": 0,
        "model": counts["budget"],
    }  # fmt: skip
    assert sum(ran[19].budget_by_rule().values()) == 0
    # Not inclusive: the budget's own share, exploration and full runs on top.
    alone = decide(candidates, Policy(mode="fraction", budget=0.33, inclusive=False), Context())
    assert alone.selected_by()["budget"] == 660


def test_a_time_budget_pays_for_them_in_seconds() -> None:
    candidates = plain(100, probability=np.linspace(0.9, 0.0, 100))
    decision = decide(candidates, Policy(mode="time", budget=50.0, exploration_rate=0.0), Context())
    # 100 s in all: a 50 s budget keeps (0.5 - 1/20) / (19/20) of them.
    assert decision.selected_by()["budget"] == math.floor((0.5 - 0.05) / 0.95 * 100 + 1e-9)


def test_escalated_every_test_over_the_budget_runs_with_propensity_1() -> None:
    candidates = plain(10, probability=np.linspace(0.9, 0.0, 10))
    policy = Policy(mode="fraction", budget=0.3, exploration_rate=0.05, escalation="why")
    decision = decide(candidates, policy, Context())
    assert decision.selected.all()
    assert decision.propensity.tolist() == [1.0] * 10
    kept = decision.selected_by()["budget"]
    assert decision.selected_by() == {
        "budget": kept,
        "exploration": 0,
        "escalation": 10 - kept,
        "expansion": 0,
        "full_run": 0,
    }
    over = decision.rules.index(Rule.ESCALATION)
    assert rule_sentence(decision, over) == "Over the budget, run while trimming is escalated (why)"
    assert policy.as_json()["escalation"] == "why"


# --- expansion ----------------------------------------------------------------------


def _expanding(probability: list[float], **fields: object) -> Candidates:
    return Candidates.of([f"t{i}" for i in range(len(probability))], probability, **fields)  # type: ignore[arg-type]


def test_the_expansion_threshold_is_the_fewest_failures_their_probabilities_make_unlikely() -> None:
    """Watched tests whose probabilities add up to 1: P(X >= 3) = 1 - 2.5/e
    = 0.080 and P(X >= 4) = 1 - (8/3)/e = 0.019 for X Poisson(1), so 4
    failures are the fewest less likely than 5%. With nearly no risk
    among them, the repository's floor (2) holds."""
    policy = Policy(mode="fraction", budget=0.5, exploration_rate=0, recent_failures=0)
    risky = decide(_expanding([0.25] * 4 + [0.01] * 4), policy, Context())
    assert risky.selected.tolist() == [True] * 4 + [False] * 4
    assert 1 - 2.5 / math.e > 0.05 > 1 - (8 / 3) / math.e
    assert risky.expand_after == 4
    quiet = decide(_expanding([0.001] * 4 + [0.0001] * 4), policy, Context())
    assert quiet.expand_after == 2
    # Probabilities that under-predict: the repository's watched tests failed
    # a quarter of the time lately, so as many as the risky ones above.
    seen = replace(policy, watched_failure_rate=0.25)
    assert decide(_expanding([0.001] * 4 + [0.0001] * 4), seen, Context()).expand_after == 4
    assert (
        decide(
            _expanding([0.001] * 4 + [0.0001] * 4), replace(policy, expand_after=3), Context()
        ).expand_after
        == 3
    )


def test_nothing_to_expand_without_a_dropped_test_or_with_expansion_off() -> None:
    candidates = _expanding([0.5, 0.1, 0.01, 0.001])
    assert decide(candidates, Policy(), Context()).expand_after is None  # order: nothing dropped
    off = Policy(mode="fraction", budget=0.5, exploration_rate=0, expand_after=0)
    assert decide(candidates, off, Context()).expand_after is None
    with pytest.raises(PolicyError, match="expand_after must be 0"):
        Policy(expand_after=-1).checked()


def test_a_build_expands_when_enough_watched_tests_fail() -> None:
    """Two of the kept tests that had passed fail: every dropped test runs,
    the exploration sample's too, each with a propensity of 1."""
    candidates = _expanding([0.001] * 10, recent=["P"] * 10)
    policy = Policy(
        mode="fraction", budget=0.3, exploration_rate=0.5, full_run_every=0, inclusive=False
    )
    decision = decide(candidates, policy, Context(seed=3))
    assert decision.expand_after == 2
    kept = np.flatnonzero(decision.selected & (decision.propensity == 1.0))
    drawn = np.flatnonzero(decision.selected & (decision.propensity < 1.0))
    assert len(kept) == 3
    assert len(drawn) > 0
    one = np.zeros(10, dtype=bool)
    one[kept[0]] = True
    assert policies.expanded(decision, one) is decision  # one failure: no news
    in_sample = one.copy()
    in_sample[drawn[0]] = True
    assert policies.expanded(decision, in_sample) is decision  # the draw never decides
    two = one.copy()
    two[kept[1]] = True
    after = policies.expanded(decision, two)
    assert after.selected.all()
    assert after.propensity.tolist() == [1.0] * 10
    assert {after.rules[i] for i in range(10) if i not in kept} == {Rule.EXPANSION}
    assert after.selected_by()["expansion"] == 7
    assert rule_sentence(after, int(drawn[0])) == (
        "Over the budget, run because 2 or more tests that had passed failed in this build"
    )


def test_a_recently_failed_test_failing_again_does_not_expand() -> None:
    candidates = _expanding(
        [0.3, 0.3, 0.001, 0.001, 0.001, 0.001], recent=["F", "F", "P", "P", "P", "P"]
    )
    policy = Policy(mode="fraction", budget=0.3, exploration_rate=0, full_run_every=0)
    decision = decide(candidates, policy, Context())
    assert decision.rules[:2] == [Rule.RECENTLY_FAILED] * 2
    failed = np.array([True, True, False, False, False, False])
    assert policies.expanded(decision, failed) is decision


def test_the_budget_pays_for_the_expansions() -> None:
    """A tenth of the dropped tests ran in expansions lately: with 5%
    exploration, 0.05 + 0.95 * 0.1 = 14.5% of what the budget drops runs
    anyway, and the budget keeps less to pay for it."""
    policy = Policy(mode="fraction", budget=0.33, expansion_share=0.1)
    assert policy.dropped_run_share == pytest.approx(0.145)
    assert trimmed_share(0.33, policy.dropped_run_share, 20) < trimmed_share(0.33, 0.05, 20)
    with pytest.raises(PolicyError, match=r"expansion_share must be 0\.\.1"):
        Policy(expansion_share=1.0).checked()


def test_confidence_counts_on_what_the_expansions_catch() -> None:
    """Expansions lately caught half of the failures over the budget: with
    no exploration, a target of 0.75 needs the prefix to keep half of the
    expected failures (0.5 + 0.5 * 0.5 = 0.75), not three quarters."""
    candidates = Candidates.of(["a", "b", "c", "d"], [0.4, 0.1, 0.3, 0.2])
    policy = Policy(mode="confidence", budget=0.75, exploration_rate=0.0)
    assert names_of(candidates, decide(candidates, policy, Context()).run_order()) == [
        "a",
        "c",
        "d",
    ]
    counted = replace(policy, expansion_catch=0.5)
    assert counted.dropped_failure_share == 0.5
    assert names_of(candidates, decide(candidates, counted, Context()).run_order()) == ["a", "c"]
    with pytest.raises(PolicyError, match=r"expansion_catch must be 0\.\.1"):
        Policy(expansion_catch=1.0).checked()


def test_confidence_goes_as_far_past_its_target_as_the_window_allows() -> None:
    """At a scale of 2, `confidence` 0.85 lets a plan drop 0.3 of its own
    expected failures (keeping 0.7), at 0.5 only 0.075; never keeping
    less than half of the target (0.3 at a scale of 2: 0.15)."""
    candidates = plain(4, probability=[0.5, 0.3, 0.15, 0.05])
    policy = Policy(mode="confidence", budget=0.85, exploration_rate=0)
    assert decide(candidates, policy, Context()).selected.tolist() == [True, True, True, False]
    scaled = replace(policy, confidence_scale=2.0)
    assert scaled.confidence_target == pytest.approx(0.7)
    assert decide(candidates, scaled, Context()).selected.tolist() == [True, True, False, False]
    assert replace(policy, confidence_scale=0.5).confidence_target == pytest.approx(0.925)
    assert replace(scaled, budget=0.3).confidence_target == pytest.approx(0.15)
    assert scaled.as_json()["confidence_scale"] == 2.0
    with pytest.raises(PolicyError, match=r"confidence_scale must be 0\.5 to 2"):
        replace(policy, confidence_scale=2.5).checked()


def test_expansions_never_take_more_than_half_of_what_the_budget_keeps() -> None:
    """Builds that break broadly again and again: the budget runs over
    rather than keep next to nothing. At fraction 0.33 with 5% exploration
    and a full run every 20 builds, the budget keeps 25.8% of the tests;
    expansions that ran 60% of the dropped tests would leave 0, so it keeps
    half of 25.8%."""
    without = trimmed_share(0.33, 0.05, 20)
    assert without == pytest.approx(((0.33 - 0.05) / 0.95 - 0.05) / 0.95)
    heavy = Policy(mode="fraction", budget=0.33, expansion_share=0.6)
    assert trimmed_share(0.33, heavy.dropped_run_share, 20) == 0.0
    assert policies.kept_share(0.33, heavy) == pytest.approx(without / 2)
    light = replace(heavy, expansion_share=0.01)
    assert policies.kept_share(0.33, light) == trimmed_share(0.33, light.dropped_run_share, 20)
    decision = decide(plain(100, probability=np.linspace(0.9, 0.0, 100)), heavy, Context())
    assert decision.selected_by()["budget"] == math.ceil(without / 2 * 100)
