"""Escalation in the closed loop: a synthetic history where the heuristic
trims without missing anything, then the scores are replaced by random ones
mid-history; the live estimate must see the misses and escalate within 100
builds, and the escalated builds must run every test. Random scores served
as probabilities are far from the observed rates too: the calibration check
escalates on its own, sooner."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from scheduler.backtest import summary
from scheduler.backtest.runner import (
    BacktestConfig,
    HistoryBuild,
    Scored,
    run_backtest,
)
from scheduler.ingest.history import read_history
from scheduler.planning.policy import Policy
from scheduler.services import scoring
from tests.backtest.histories import write_builds

STEADY = 140  # tests that never fail
FRAGILE = 30  # tests that fail at random, FAIL_RATE of their runs
FAIL_RATE = 0.15
BUILDS = 320
WARMUP = 50
SWITCH = 170  # from this build on, the scores are random


def write_history(path: Path) -> Path:
    rng = np.random.default_rng(7)
    builds = []
    for _ in range(BUILDS):
        fails = rng.random(FRAGILE) < FAIL_RATE
        outcomes = {f"steady_{i:03d}": "passed" for i in range(STEADY)}
        outcomes |= {
            f"fragile_{i:03d}": "failed" if fail else "passed"
            for i, fail in enumerate(fails.tolist())
        }
        builds.append(outcomes)
    return write_builds(path, builds)


def randomised(build: HistoryBuild, scored: Scored) -> Scored:
    if build.index < SWITCH:
        return scored
    rng = np.random.default_rng(build.index)
    scores = rng.random(len(scored.probabilities))
    # The scorer's scores, so the plan's order (its ranks) is random too.
    return replace(
        scored, probabilities=scores, raw=scores, ranks=scoring.ranks(scores, scored.matrix)
    )


def test_random_scores_mid_history_escalate_within_100_builds(tmp_path: Path) -> None:
    reports = list(read_history(write_history(tmp_path / "history.jsonl"), "jsonl"))
    config = BacktestConfig(
        warmup=WARMUP,
        retrain_every=0,  # the heuristic throughout: the random scores stay
        policy=Policy(mode="fraction", budget=0.33),
        closed_loop=True,
        random_seeds=1,
        calibration_ceiling=1.0,  # the misses alone (drift: the test below)
    )
    result = run_backtest(reports, config, rescore=randomised)
    records = {record.index: record for record in result.records}
    escalated = [index for index, record in records.items() if record.escalation is not None]
    # Before the switch trimming kept every failure: no escalation.
    before = [records[i] for i in range(WARMUP, SWITCH)]
    assert all(r.escalation is None for r in before)
    assert sum(int((r.failed & ~r.selected).sum()) for r in before) == 0
    # After it, escalation within 100 builds, with its reason.
    assert escalated, "the random scores were never noticed"
    first = escalated[0]
    assert SWITCH < first < SWITCH + 100
    assert "more than the 10.0% promised" in str(records[first].escalation)
    # Escalated, every test over the budget runs (or a full run does): nothing is missed.
    for index in escalated:
        counts = records[index].selected_by
        assert records[index].selected.all()
        assert counts is not None
        assert counts["escalation"] > 0 or counts["full_run"] == len(records[index].names)
    document = summary.trimming_figures(result)
    assert document["escalated_builds"] == len(escalated)
    assert document["first_escalation"]["build"] == f"b{first}"


def test_random_probabilities_mid_history_escalate_on_calibration_drift(tmp_path: Path) -> None:
    reports = list(read_history(write_history(tmp_path / "history.jsonl"), "jsonl"))
    config = BacktestConfig(
        warmup=WARMUP,
        retrain_every=0,
        policy=Policy(mode="fraction", budget=0.33),
        closed_loop=True,
        random_seeds=1,
        miss_ceiling=1.0,  # the calibration check alone
        # The heuristic is never calibrated here (no training to keep a map
        # in): its error is about 0.02 before the switch.
        calibration_ceiling=0.05,
    )
    result = run_backtest(reports, config, rescore=randomised)
    records = {record.index: record for record in result.records}
    escalated = [index for index, record in records.items() if record.escalation is not None]
    assert all(records[i].escalation is None for i in range(WARMUP, SWITCH))
    assert escalated, "the random probabilities were never noticed"
    first = escalated[0]
    # A uniform probability over tests that fail 2.6% of the time: within 20 builds.
    assert SWITCH < first <= SWITCH + 20
    reason = str(records[first].escalation)
    assert reason.startswith("calibration error ")
    assert " over the last 100 evaluated builds (95% interval from " in reason
    assert reason.endswith(") is above 0.05")
    assert float(reason.split()[2]) > 0.05
    # What escalated is the interval's lower bound: the drift is in every build.
    assert float(reason.split("interval from ")[1].split(")")[0]) >= 0.05  # printed to 0.001
    # From then on the window only grows worse: every build escalated runs every test.
    assert escalated == list(range(first, BUILDS))
    assert all(records[i].selected.all() for i in escalated)
