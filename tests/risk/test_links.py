"""File-test links: status changes only, and older builds weigh less."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from scheduler.outcomes import Outcome
from scheduler.risk.links import EMPTY_LINK, HALF_LIFE_BUILDS, Link, decayed
from scheduler.risk.replay import Build, Replayer

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_a_link_halves_every_half_life() -> None:
    link = EMPTY_LINK.add(ran=True, failed=True, build=1)
    assert link == Link(1.0, 1.0, 1)
    later = link.add(ran=True, failed=False, build=1 + HALF_LIFE_BUILDS)
    assert later == Link(1.5, 0.5, 1 + HALF_LIFE_BUILDS)
    read = decayed([later.changed_together], [later.valued_at], 1 + 3 * HALF_LIFE_BUILDS)
    assert read.tolist() == [1.5 / 4]


def test_reading_and_adding_decay_alike() -> None:
    """A link read at build n equals one added to at n with nothing."""
    link = Link(3.0, 2.0, 10)
    added = link.add(ran=False, failed=False, build=57)
    values = decayed([3.0, 2.0], [10, 10], 57)
    assert values.tolist() == [added.changed_together, added.failed_together]
    assert decayed([3.0], [57], 57).tolist() == [3.0]
    assert decayed(np.array([]), np.array([], dtype=np.int64), 5).shape == (0,)


def build(number: int, outcome: Outcome, *paths: str) -> Build:
    return Build(
        key=f"c{number}/b",
        at=T0 + timedelta(hours=number),
        paths=paths,
        outcomes={"t": outcome},
        files={"t": None},
    )


def test_a_test_that_stays_red_fails_together_only_with_the_change_that_broke_it() -> None:
    replayer = Replayer()
    builds = [
        build(1, Outcome.PASSED, "a.py"),
        build(2, Outcome.FAILED, "broke.py"),
        *(build(n, Outcome.FAILED, f"other{n}.py") for n in range(3, 53)),
        build(53, Outcome.PASSED, "fix.py"),
        build(54, Outcome.ERROR, "broke.py"),
    ]
    for each in builds:
        replayer.fold(each)
    assert replayer.builds == 54
    broke = replayer.links["broke.py"]["t"]
    # Ran with it in builds 2 and 54, started failing in both.
    factor = 0.5 ** (52 / HALF_LIFE_BUILDS)
    assert broke == Link(factor + 1.0, factor + 1.0, 54)
    assert all(replayer.links[f"other{n}.py"]["t"].failed_together == 0 for n in range(3, 53))
    assert replayer.links["other3.py"]["t"].changed_together == 1.0
    assert replayer.links["fix.py"]["t"] == Link(1.0, 0.0, 53)


def test_features_read_the_links_decayed_to_the_build_before() -> None:
    replayer = Replayer()
    replayer.fold(build(1, Outcome.FAILED, "a.py"))
    for n in range(2, 2 + HALF_LIFE_BUILDS):
        replayer.fold(build(n, Outcome.PASSED, "b.py"))
    matrix = replayer.features(build(999, Outcome.PASSED, "a.py"), ("t",))
    # One build, a half-life ago: ran 0.5, failed 0.5.
    assert matrix.column("cochange_max").tolist() == [0.5]
    assert matrix.column("cofail_sum").tolist() == [0.5]
    assert matrix.column("cofail_max").tolist() == [pytest.approx((0.5 + 0.1) / (0.5 + 2.0))]
