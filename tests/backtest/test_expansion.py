"""Expansion in the closed loop: a synthetic history whose tests never fail
until, in one build, most of them break together (a change that broke more
than any history foresaw). Trimmed to a fifth of the tests, the plan keeps a
few of them; with expansion on, those failing is enough to run the rest, so
the build keeps every failure and the learner sees every outcome; without,
the budget lets most of them through. The budget pays for the expansion in
the builds after it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from scheduler.backtest import summary
from scheduler.backtest.runner import BacktestConfig, run_backtest
from scheduler.ingest.history import read_history
from scheduler.planning.policy import Policy
from tests.backtest.histories import write_builds

TESTS = 200
BUILDS = 40
WARMUP = 10
BURST = 25  # the build in which 180 of the 200 tests fail
BROKEN = 180


def write_history(path: Path) -> Path:
    return write_builds(
        path,
        (
            {
                f"t{i:02d}": "failed" if number == BURST and i < BROKEN else "passed"
                for i in range(TESTS)
            }
            for number in range(BUILDS)
        ),
    )


def test_a_build_that_breaks_more_than_foreseen_runs_everything(tmp_path: Path) -> None:
    reports = list(read_history(write_history(tmp_path / "burst.jsonl"), "jsonl"))
    policy = Policy(mode="fraction", budget=0.2, full_run_every=0, exploration_rate=0.0)
    config = BacktestConfig(warmup=WARMUP, retrain_every=0, policy=policy, closed_loop=True)

    expanding = run_backtest(reports, config)
    burst = next(r for r in expanding.records if r.build == f"b{BURST}")
    # 40 tests kept (a fifth of 200); at most 20 of them passed, so at least
    # 20 that had never failed failed, far more than their probabilities
    # (near 0) make likely: every test ran, and every failure was kept.
    assert burst.selected.all()
    assert burst.selected_by is not None
    kept = burst.selected_by["budget"]
    assert kept == 40
    assert burst.selected_by["expansion"] == TESTS - kept
    assert int(burst.failed.sum()) == BROKEN
    figures = summary.trimming_figures(expanding)
    assert figures["expanded_builds"] == 1
    # What the budget selected, by why: in the burst, the priority order
    # alone (no test had failed); in the build after it, the 180 tests
    # that failed, forced in as recently failed, over the budget's 40.
    assert burst.budget_by == {"must_run": 0, "new": 0, "own_file_changed": 0,
                               "recently_failed": 0, "model": 40}  # fmt: skip
    after = next(r for r in expanding.records if r.index == BURST + 1)
    assert after.budget_by is not None
    assert (after.budget_by["recently_failed"], after.budget_by["model"]) == (BROKEN, 0)
    shares = figures["budget_share_by_rule"]
    assert shares["recently_failed"] > 0
    assert sum(shares.values()) == pytest.approx(figures["selected_share_by"]["budget"])
    # The learner saw every outcome of that build: the warm-up's, the plans'
    # selections, and the whole burst build.
    ran = sum(int(r.selected.sum()) for r in expanding.records)
    assert expanding.executions == WARMUP * TESTS + ran
    # The builds after it pay for it. Three builds on (the 180 that failed
    # are no longer forced), the window holds 18 builds: the burst's
    # expansion ran 160 tests; the budget dropped 160 in each of the 15
    # before, and 20 in each of the two after. A window not yet full counts
    # its missing builds as builds that did not expand: 160 of 100 builds of
    # (160 + 2,440) / 18 tests, x = 1.1%. With no exploration and no full
    # runs the budget keeps (0.2 - x) / (1 - x) = 19.1% of 200: 39 tests, not 40.
    later = next(r for r in expanding.records if r.index == BURST + 3)
    assert later.selected_by is not None
    assert later.selected_by["budget"] == 39

    plain = run_backtest(reports, replace(config, policy=replace(policy, expand_after=0)))
    missed = next(r for r in plain.records if r.build == f"b{BURST}")
    assert int(missed.selected.sum()) == kept
    assert int((missed.failed & missed.selected).sum()) <= kept
    assert summary.trimming_figures(plain)["expanded_builds"] == 0
    unpaid = next(r for r in plain.records if r.index == BURST + 3)
    assert unpaid.selected_by is not None
    assert unpaid.selected_by["budget"] == kept
