"""The backtest's aggregation and status changes, against hand-computed
figures (the measures themselves are tested in tests/evaluation)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from scheduler.backtest import summary
from scheduler.backtest.runner import (
    OPTIMAL,
    ORIGINAL,
    RANDOM,
    RISKRANK,
    BacktestConfig,
    BacktestResult,
    BuildRecord,
    history_builds,
    status_changes,
)
from scheduler.ingest.history import HistoryReport
from scheduler.ingest.results import CaseResult
from scheduler.models import Outcome


def record(
    index: int,
    names: str,
    failed: list[int],
    changed: list[int],
    durations: list[float],
    orders: dict[str, list[int]],
) -> BuildRecord:
    return BuildRecord(
        index=index,
        build=str(index + 1),
        names=tuple(names),
        failed=np.array(failed, dtype=bool),
        changed=np.array(changed, dtype=bool),
        durations=np.array(durations, dtype=np.float64),
        orders={name: np.array(order, dtype=np.intp) for name, order in orders.items()},
        selected=np.ones(len(names), dtype=bool),
        model_version=None,
        full_run=False,
    )


def result_of(*records: BuildRecord) -> BacktestResult:
    return BacktestResult(BacktestConfig(), len(records), 0, list(records), [])


# Build 1: a b c d; b and d fail, only b is a status change.
FIRST = record(
    0,
    "abcd",
    failed=[0, 1, 0, 1],
    changed=[0, 1, 0, 0],
    durations=[1.0, 2.0, 0.0, 1.0],
    orders={
        RISKRANK: [1, 3, 0, 2],  # b d a c
        ORIGINAL: [0, 1, 2, 3],
        f"{RANDOM}/0": [3, 2, 1, 0],  # d c b a
        f"{RANDOM}/1": [0, 1, 2, 3],
    },
)
# Build 2: nothing fails.
QUIET = record(
    1,
    "ab",
    failed=[0, 0],
    changed=[0, 0],
    durations=[1.0, 1.0],
    orders={RISKRANK: [0, 1], ORIGINAL: [0, 1], f"{RANDOM}/0": [1, 0], f"{RANDOM}/1": [0, 1]},
)


def test_one_build_by_hand() -> None:
    per = summary.build_measures(FIRST, "all")
    # b d a c: failures at 1 and 2 of 4: 1 - 3/8 + 1/8
    assert per[RISKRANK]["apfd"] == pytest.approx(0.75)
    # a b c d: failures at 2 and 4: 1 - 6/8 + 1/8
    assert per[ORIGINAL]["apfd"] == pytest.approx(0.375)
    # random: the mean of its seeds, d c b a (1 and 3: 0.625) and a b c d (0.375)
    assert per[RANDOM]["apfd"] == pytest.approx(0.5)
    assert per[RISKRANK]["first_failure"] == 1.0
    assert per[ORIGINAL]["first_failure"] == 2.0
    assert per[RANDOM]["first_failure"] == 1.5
    # optimal: failing tests first, shortest first: d (1 s) then b (2 s)
    assert per[OPTIMAL]["apfd"] == pytest.approx(0.75)
    # APFDc of b d a c, durations 2 1 1 0, total 4:
    # b: (4 - 2/2) = 3, d: (2 - 1/2) = 1.5 -> 4.5 / (4 * 2)
    assert per[RISKRANK]["apfdc"] == pytest.approx(4.5 / 8)
    # recall at 10% of 4 tests: the first test (b), one of two failures
    assert per[RISKRANK]["recall_tests_10"] == pytest.approx(0.5)
    assert per[RISKRANK]["caught_tests_10"] == 1.0
    assert per[ORIGINAL]["caught_tests_10"] == 0.0
    assert per[RANDOM]["caught_tests_10"] == 0.5
    # 10% of 4 s is 0.4 s: riskrank's first test takes 2 s, nothing runs
    assert per[RISKRANK]["recall_time_10"] == 0.0

    changes = summary.build_measures(FIRST, "changes")
    # only b counts: first of four for riskrank, second for the original order
    assert changes[RISKRANK]["apfd"] == pytest.approx(1 - 1 / 4 + 1 / 8)
    assert changes[ORIGINAL]["apfd"] == pytest.approx(1 - 2 / 4 + 1 / 8)
    # the optimal order of the view: b first, though d fails too
    assert changes[OPTIMAL]["first_failure"] == 1.0


def test_means_over_failing_builds_and_coleman_mean() -> None:
    figures = summary.figures(result_of(FIRST, QUIET))
    apfd = figures["all"][RISKRANK]["apfd"]
    assert apfd["builds"] == 1
    assert apfd["mean"] == pytest.approx(0.75)
    assert apfd["mean_all"] == pytest.approx((0.75 + 1.0) / 2)  # failure-free counts as 1
    assert figures["all"][RANDOM]["apfd"]["mean_all"] == pytest.approx((0.5 + 1.0) / 2)
    assert "mean_all" not in figures["all"][RISKRANK]["first_failure"]
    assert list(figures["all"]) == [RISKRANK, ORIGINAL, RANDOM, OPTIMAL]
    name, value = summary.strongest_baseline(figures["all"], "apfd")
    assert (name, value) == (RANDOM, pytest.approx(0.5))
    name, value = summary.strongest_baseline(figures["all"], "first_failure")
    assert (name, value) == (RANDOM, 1.5)  # lower is better


def test_edge_builds() -> None:
    single = record(0, "x", [1], [1], [0.0], {RISKRANK: [0], ORIGINAL: [0]})
    every = record(1, "xyz", [1, 1, 1], [1, 0, 1], [0.0, 0.0, 0.0], {RISKRANK: [2, 1, 0]})
    ties = record(2, "pq", [0, 1], [0, 1], [1.0, 1.0], {RISKRANK: [1, 0], ORIGINAL: [0, 1]})
    for view in summary.VIEWS:
        per = summary.build_measures(single, view)
        assert per[RISKRANK]["apfd"] == pytest.approx(0.5)  # 1 - 1 + 1/2
        assert per[RISKRANK]["apfdc"] == pytest.approx(0.5)  # zero durations: APFD
        assert per[RISKRANK]["napfd_10"] == pytest.approx(0.5)  # 0 s always fits
    per = summary.build_measures(every, "all")
    assert per[RISKRANK]["apfd"] == pytest.approx(0.5)  # all failing: 1/2 whatever the order
    changes = summary.build_measures(every, "changes")
    # z y x: the changes x and z at 1 and 3 of 3: 1 - 4/6 + 1/6
    assert changes[RISKRANK]["apfd"] == pytest.approx(0.5)
    assert changes[RISKRANK]["first_failure"] == 1.0
    per = summary.build_measures(ties, "all")
    assert per[RISKRANK]["apfd"] == pytest.approx(0.75)
    assert per[ORIGINAL]["apfd"] == pytest.approx(0.25)
    assert per[OPTIMAL]["apfd"] == pytest.approx(0.75)
    assert summary.build_measures(QUIET, "all")[RISKRANK] == dict.fromkeys(summary.MEASURES)


def report(build: str, outcomes: dict[str, str]) -> HistoryReport:
    return HistoryReport(
        build=build,
        commit=f"c{build}",
        time=None,
        branch=None,
        changed_files=(),
        results=tuple(
            CaseResult(test=name, outcome=Outcome(outcome), duration=1.0)
            for name, outcome in outcomes.items()
        ),
    )


def test_status_changes() -> None:
    builds = history_builds(
        [
            report("1", {"a": "failed", "b": "passed"}),
            report("2", {"a": "failed", "b": "failed", "c": "error"}),
            report("3", {"a": "passed", "b": "failed", "c": "passed"}),
            report("4", {"a": "failed", "b": "skipped", "c": "failed"}),
            report("5", {"b": "failed", "c": "passed"}),
        ]
    )
    changes = [
        dict(zip(b.names, flags.tolist(), strict=True))
        for b, flags in zip(builds, status_changes(builds), strict=True)
    ]
    assert changes == [
        {"a": True, "b": False},  # a is new and fails
        {"a": False, "b": True, "c": True},  # a failed before; c is new
        {"a": False, "b": False, "c": False},
        {"a": True, "c": True},  # b skipped: not a run
        {"b": False, "c": False},  # b's previous run (build 3) failed
    ]
    # builds without a time are a day apart, from 1970-01-02
    assert [b.at for b in builds[:2]] == [
        datetime(1970, 1, 2, tzinfo=UTC),
        datetime(1970, 1, 3, tzinfo=UTC),
    ]


def test_report_recalls_agree_with_the_metrics() -> None:
    from scheduler.backtest import report
    from scheduler.evaluation import metrics

    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 30, 293):
        ranked = rng.random(n) < 0.3
        ranked[rng.integers(n)] = True
        durations = np.where(rng.random(n) < 0.3, 0.0, rng.random(n) * 5)
        for time in (False, True):
            expected = [
                metrics.recall_at_time(ranked, durations, share)
                if time
                else metrics.recall_at_tests(ranked, share)
                for share in report.SHARE_GRID
            ]
            assert report._recalls(ranked, durations, time).tolist() == expected


def test_calibration_figures_against_hand_computed_ones() -> None:
    # Build 1: a b c d at 0.5 0.5 0.1 0.1, a and c run, b fails (dropped).
    # Build 2: the same, a runs, a fails; build 3 and 4 nothing fails.
    def planned(index: int, failed: list[int], selected: list[int]) -> BuildRecord:
        base = record(index, "abcd", failed, [0] * 4, [1.0] * 4, {RISKRANK: [0, 1, 2, 3]})
        return replace(
            base,
            selected=np.array(selected, dtype=bool),
            probabilities=np.array([0.5, 0.5, 0.1, 0.1]),
        )

    records = [
        planned(0, [0, 1, 0, 0], [1, 0, 1, 0]),
        planned(1, [1, 0, 0, 0], [1, 0, 0, 0]),
        planned(2, [0, 0, 0, 0], [1, 1, 1, 1]),
        planned(3, [0, 0, 0, 0], [1, 1, 1, 1]),
    ]
    figures = summary.calibration_figures(result_of(*records))
    # Stated per build: 0.6, 1.1, 0, 0 expected failures dropped; the
    # chance of one 1 - 0.5 * 0.9, 1 - 0.5 * 0.9 * 0.9, 0, 0.
    assert figures["expected_failures_dropped"] == pytest.approx((0.6 + 0.7) / 4)
    assert figures["probability_any_dropped"] == pytest.approx((0.55 + 1 - 0.405) / 4)
    assert figures["failures_dropped"] == pytest.approx(1 / 4)
    assert figures["builds_with_a_failure_dropped"] == pytest.approx(1 / 4)
    # The 95% bounds: build 1 drops b (0.5) and d (0.1): P(0) = 0.45,
    # P(<= 1) = 0.95, so 1; build 2 drops b, c, d: P(<= 1) = 0.45 * 0.9 +
    # 0.5 * 0.81 + 0.45 * 0.09 * 2 = 0.891, so 2; builds 3 and 4 drop
    # nothing, 0. Build 1 dropped 1: all four builds within their bound.
    assert figures["failures_dropped_bound"] == pytest.approx((1 + 2) / 4)
    assert figures["builds_within_bound"] == 1.0
    assert (figures["trimmed_builds"], figures["trimmed_builds_within_bound"]) == (2, 1.0)
    assert figures["by_scorer"]["heuristic"]["builds"] == 4
    assert figures["by_scorer"]["heuristic"]["ece"] == pytest.approx(figures["reliability"]["ece"])
    assert figures["by_scorer"]["model"] == {"builds": 0, "ece": None}
    assert figures["failures_kept_share"] == pytest.approx(1 / 2)
    assert figures["failures_kept_per_failing_build"] == pytest.approx(1 / 2)
    assert figures["tests_share"] == pytest.approx((0.5 + 0.25 + 1 + 1) / 4)
    assert figures["mean_predicted"] == pytest.approx(0.3)
    assert figures["observed_rate"] == pytest.approx(2 / 16)
    table = figures["reliability"]
    assert sum(table["rows"]) == 16
    assert table["predicted"][0] == pytest.approx(0.1)
    assert table["predicted"][-1] == pytest.approx(0.5)
    # The second half: builds 3 and 4, where nothing failed.
    second = figures["second_half"]
    assert second["builds"] == 2
    assert second["observed_rate"] == 0.0
    assert second["failures_kept_share"] is None


def test_calibration_by_scorer_keeps_model_and_heuristic_builds_apart() -> None:
    # The heuristic's two builds are calibrated (0 where a test passes, 1
    # where it fails), the model's two are not (0.5 where nothing fails).
    def served(index: int, p: list[float], failed: list[int], version: int | None) -> BuildRecord:
        base = record(index, "ab", failed, [0, 0], [1.0, 1.0], {RISKRANK: [0, 1]})
        return replace(base, probabilities=np.array(p), model_version=version)

    records = [served(0, [0.0, 1.0], [0, 1], None), served(1, [1.0, 0.0], [1, 0], None)]
    records += [served(2, [0.5, 0.5], [0, 0], 3), served(3, [0.5, 0.5], [0, 0], 3)]
    split = summary.calibration_figures(result_of(*records))["by_scorer"]
    assert split["heuristic"]["builds"] == 2
    assert split["heuristic"]["ece"] == pytest.approx(0.0)
    assert split["model"]["builds"] == 2
    assert split["model"]["ece"] == pytest.approx(0.5)
    assert split["model"]["observed_rate"] == 0.0


def test_calibration_by_build_tells_the_builds_that_broke_at_once_apart() -> None:
    """Four tests at 0.1 each: a trimmed build that drops c and d (nothing
    fails), one that expands (all four fail: its dropped tests ran), one
    escalated and one full run; then the CLI's sentence says the same."""
    from scheduler.cli.backtest import build_kinds_sentence

    def built(index: int, failed: list[int], selected: list[int], **kind: Any) -> BuildRecord:
        base = record(index, "abcd", failed, [0] * 4, [1.0] * 4, {RISKRANK: [0, 1, 2, 3]})
        return replace(
            base,
            selected=np.array(selected, dtype=bool),
            probabilities=np.full(4, 0.1),
            **kind,
        )

    records = [
        built(0, [0, 0, 0, 0], [1, 1, 0, 0]),
        built(1, [1, 1, 1, 1], [1, 1, 1, 1], selected_by={"budget": 2, "expansion": 2}),
        built(2, [0, 0, 0, 1], [1, 1, 1, 1], escalation="calibration error 0.5 …"),
        built(3, [0, 0, 0, 0], [1, 1, 1, 1], full_run=True),
        built(4, [1, 0, 0, 1], [1, 1, 0, 0]),
    ]
    kinds = summary.calibration_figures(result_of(*records))["by_build"]
    assert list(kinds) == ["full run", "escalated", "expanded", "trimmed"]
    assert kinds["trimmed"] == {
        "builds": 2, "expected": 0.8, "failures": 2, "stated_dropped": 0.4, "dropped": 1,
    }  # fmt: skip
    assert kinds["expanded"] == {
        "builds": 1, "expected": 0.4, "failures": 4, "stated_dropped": 0.0, "dropped": 0,
    }  # fmt: skip
    assert (kinds["escalated"]["failures"], kinds["full run"]["failures"]) == (1, 0)
    assert summary.build_kind(replace(records[3], full_run=False)) == "ran all"
    assert build_kinds_sentence({"trimmed": kinds["trimmed"], "expanded": kinds["expanded"]}) == (
        "by what the plans did: trimmed (2 builds): 0.8 failures expected, 2 came, "
        "0.4 stated among the dropped tests, 1 dropped; expanded (1 build): 0.4 failures "
        "expected, 4 came"
    )


def test_calibration_of_the_refused_model_where_the_heuristic_served() -> None:
    # Builds 1 and 2: the heuristic served, and the refused model v2 would
    # have said 0.25 for every test; build 3: model v3 served (nothing
    # unserved to measure there).
    def built(index: int, failed: list[int], unserved: list[float] | None) -> BuildRecord:
        base = record(index, "ab", failed, [0, 0], [1.0, 1.0], {RISKRANK: [0, 1]})
        return replace(
            base,
            probabilities=np.array([0.1, 0.1]),
            model_version=None if unserved is not None else 3,
            unserved_probabilities=None if unserved is None else np.array(unserved),
            unserved_version=None if unserved is None else 2,
        )

    records = [built(0, [1, 0], [0.25, 0.25]), built(1, [0, 0], [0.25, 0.25])]
    records.append(built(2, [1, 1], None))
    split = summary.calibration_figures(result_of(*records))["by_scorer"]
    unserved = split[summary.UNSERVED]
    # Four rows at 0.25, one failure among them: right on average. With
    # four rows, each is a bin of its own: |0.25 - 1| once, |0.25 - 0|
    # three times.
    assert (unserved["builds"], unserved["versions"]) == (2, [2])
    assert unserved["mean_predicted"] == pytest.approx(0.25)
    assert unserved["observed_rate"] == pytest.approx(0.25)
    assert unserved["ece"] == pytest.approx((0.75 + 3 * 0.25) / 4)
    assert sum(unserved["reliability"]["rows"]) == 4
    # The heuristic's probabilities on the same builds: 0.1 everywhere.
    assert split["heuristic"]["ece"] == pytest.approx((0.9 + 3 * 0.1) / 4)
    assert split["model"]["builds"] == 1


def test_no_unserved_part_where_no_model_was_refused() -> None:
    rows = record(0, "ab", [1, 0], [1, 0], [1.0, 1.0], {RISKRANK: [0, 1]})
    split = summary.calibration_figures(
        result_of(replace(rows, probabilities=np.array([0.5, 0.5])))
    )["by_scorer"]
    assert summary.UNSERVED not in split
