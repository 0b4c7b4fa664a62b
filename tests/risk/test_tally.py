"""The per-test fold, by hand-computed examples."""

from datetime import UTC, datetime

from scheduler.models import Outcome
from scheduler.risk.tally import WINDOW, Observation, Tally, advance

T0 = datetime(2024, 1, 1, tzinfo=UTC)
P = Observation(Outcome.PASSED, 1.0, flaky=False)
F = Observation(Outcome.FAILED, 3.0, flaky=False)
E = Observation(Outcome.ERROR, None, flaky=False)


def fold(*steps: tuple[Observation, str]) -> Tally:
    tally = Tally()
    for seen, build in steps:
        tally = advance(tally, seen, build=build, at=T0).state
    return tally


def test_a_sequence_of_builds() -> None:
    tally = fold((P, "b1"), (F, "b2"), (F, "b3"), (P, "b4"), (E, "b5"), (P, "b6"), (P, "b7"))
    assert tally.runs == 7
    assert tally.failures == 3
    assert tally.recent == "PPEPFFP"
    # P→F, F→P, P→E, E→P: four changes between passing and failing.
    assert tally.flips == 4
    assert tally.builds_since_failure == 2
    assert tally.last_outcome is Outcome.PASSED
    assert tally.last_build == "b7"
    # Durations: 1, 3, 3, 1, (none), 1, 1.
    assert tally.duration_count == 6
    assert tally.duration_mean == 10 / 6


def test_never_failed_has_no_builds_since_failure() -> None:
    tally = fold((P, "b1"), (P, "b2"))
    assert tally.builds_since_failure is None
    assert tally.failures == 0
    assert tally.last_failure_at is None


def test_shards_of_one_build_count_once_and_the_worst_outcome_wins() -> None:
    tally = fold((P, "b1"), (P, "b2"), (F, "b2"), (P, "b2"))
    assert tally.runs == 2
    assert tally.failures == 1
    assert tally.recent == "FP"
    assert tally.flips == 1
    assert tally.builds_since_failure == 0


def test_upgrading_a_build_to_failing_mends_the_flip_count() -> None:
    # F then P (one flip); the second build's other shard fails: F F, no flip.
    tally = fold((F, "b1"), (P, "b2"), (F, "b2"))
    assert tally.recent == "FF"
    assert tally.flips == 0


def test_steps_tell_the_links_what_changed() -> None:
    first = advance(Tally(), P, build="b1", at=T0)
    assert (first.new_build, first.status_change) == (True, False)
    same_build_fails = advance(first.state, F, build="b1", at=T0)
    assert (same_build_fails.new_build, same_build_fails.status_change) == (False, True)
    again = advance(same_build_fails.state, F, build="b1", at=T0)
    assert (again.new_build, again.status_change) == (False, False)


def test_a_status_change_is_a_failure_after_a_pass_or_none() -> None:
    """Failing in a first build, or after a passing one, is a status change;
    staying red (a failure or an error after either) is not."""
    state = Tally()
    changes = []
    for seen, build in [(F, "b1"), (E, "b2"), (F, "b3"), (P, "b4"), (E, "b5"), (F, "b6")]:
        step = advance(state, seen, build=build, at=T0)
        changes.append(step.status_change)
        state = step.state
    assert changes == [True, False, False, False, True, False]


def test_a_shard_turning_a_build_red_after_red_is_no_status_change() -> None:
    # b1 failed; b2's first shard passed, its second fails: b2 stays red after b1.
    state = fold((F, "b1"), (P, "b2"))
    assert advance(state, F, build="b2", at=T0).status_change is False
    # After a passing b1 it is one.
    state = fold((P, "b1"), (P, "b2"))
    assert advance(state, F, build="b2", at=T0).status_change is True


def test_flaky_builds_are_counted() -> None:
    flaky = Observation(Outcome.PASSED, 1.0, flaky=True)
    assert fold((flaky, "b1"), (P, "b2"), (flaky, "b3")).flaky_runs == 2


def test_the_window_keeps_the_newest() -> None:
    tally = fold(*[(P, f"b{i}") for i in range(WINDOW + 10)])
    assert tally.recent == "P" * WINDOW
    assert tally.runs == WINDOW + 10
