"""The simple orderings riskrank is measured against, the paired comparison
with the strongest of them, and --half: on hand-built histories, through
the engine and through `riskrank backtest` itself."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from scheduler.backtest import summary
from scheduler.backtest.runner import (
    FAILURE_RATE,
    FAILURE_RATE_PER_SECOND,
    NEW_THEN_RECENT,
    ORIGINAL,
    RECENTLY_FAILED,
    SHORTEST,
    SIMPLE_ORDERINGS,
    TRANSITIONS,
    BacktestConfig,
    BacktestError,
    run_backtest,
)
from scheduler.evaluation import metrics, paired
from scheduler.ingest.history import read_history
from tests.e2e.conftest import clean_env
from tests.test_cli_outcomes import one_line, riskrank, unboxed

Build = dict[str, tuple[str, float]]  # test -> (outcome, duration)


def write_builds(path: Path, builds: list[Build]) -> Path:
    lines = [
        {
            "build": f"b{number}",
            "commit": f"{number:040x}",
            "time": f"2024-01-01T{number // 60:02d}:{number % 60:02d}:00+00:00",
            "branch": "main",
            "changed_files": [],
            "results": [
                {"test": test, "outcome": outcome, "duration": duration}
                for test, (outcome, duration) in tests.items()
            ],
        }
        for number, tests in enumerate(builds, start=1)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


# Four builds of history, then the scored one, where n is new. Before it:
#   test  outcomes  since last failure  flips  failure rate  duration
#   a     P P P P   never               0      0             1
#   b     F P P P   3                   1      0.25          2
#   c     F F F P   1                   1      0.75          4
#   d     P F P F   0                   3      0.5           8
#   e     F P F P   1                   3      0.5           0.5
#   n     (new)     never               0      0             2 (the median)
HAND = {
    "a": ("PPPP", 1.0),
    "b": ("FPPP", 2.0),
    "c": ("FFFP", 4.0),
    "d": ("PFPF", 8.0),
    "e": ("FPFP", 0.5),
}
WORD = {"P": "passed", "F": "failed"}


def hand_builds() -> list[Build]:
    builds: list[Build] = [
        {test: (WORD[letters[i]], duration) for test, (letters, duration) in HAND.items()}
        for i in range(4)
    ]
    last = {test: ("passed", duration) for test, (_, duration) in HAND.items()}
    builds.append({**last, "n": ("failed", 2.0)})
    return builds


def test_each_simple_ordering_gives_its_order(tmp_path: Path) -> None:
    history = write_builds(tmp_path / "hand.jsonl", hand_builds())
    result = run_backtest(read_history(history), BacktestConfig(warmup=4, retrain_every=0))
    (record,) = result.records
    assert record.names == ("a", "b", "c", "d", "e", "n")
    named = {
        name: "".join(record.names[i] for i in order.tolist())
        for name, order in record.orders.items()
    }
    assert named[ORIGINAL] == "abcden"
    # n is new; then by builds since the last failure; c before e by rate.
    assert named[NEW_THEN_RECENT] == "ndceba"
    # the never-failed a and n last, in the dataset's order
    assert named[RECENTLY_FAILED] == "dceban"
    # d before e (0.5 each): the more recent failure
    assert named[FAILURE_RATE] == "cdeban"
    # per second: e 1.0, c 0.1875, b 0.125, d 0.0625, then a and n at 0
    assert named[FAILURE_RATE_PER_SECOND] == "ecbdan"
    # 3 flips each: d (failed last build) before e; 1 each: c before b
    assert named[TRANSITIONS] == "decban"
    # n takes the median duration (2), b's: the dataset's order breaks the tie
    assert named[SHORTEST] == "eabncd"
    # Only n fails: "new first" finds it first, a perfect order.
    figures = summary.figures(result)["all"]
    assert figures[NEW_THEN_RECENT]["apfd"]["mean"] == pytest.approx(1 - 1 / 6 + 1 / 12)
    assert summary.strongest_simple(figures, "apfd") == NEW_THEN_RECENT


# A history where new tests often fail on arrival and failures persist: 36
# builds of 8 tests, one more test every 4 builds. With seed 13, "new first"
# is the strongest simple ordering on every measure the test recomputes.
def random_builds(seed: int = 13, count: int = 36) -> list[Build]:
    rng = random.Random(seed)  # noqa: S311 - a test history, not a secret
    tests = {f"t{i}": rng.choice((0.5, 1.0, 2.0, 3.0)) for i in range(8)}
    failing: set[str] = set()
    fresh: set[str] = set()  # new tests that fail on arrival
    builds: list[Build] = []
    for number in range(count):
        if number and number % 4 == 0:
            name = f"n{number}"
            tests[name] = rng.choice((0.5, 1.0, 2.0))
            if rng.random() < 0.7:
                fresh.add(name)
        build: Build = {}
        for name, duration in tests.items():
            if name in fresh:
                fails = True
                fresh.discard(name)
            elif name in failing:
                fails = rng.random() < 0.6
            else:
                fails = rng.random() < 0.06
            (failing.add if fails else failing.discard)(name)
            build[name] = ("failed" if fails else "passed", duration)
        builds.append(build)
    return builds


def new_then_recent(builds: list[Build], upto: int) -> list[str]:
    """Build `upto`'s tests in the order "new first, then by builds since the
    last failure, then by failure rate", from the builds before it only."""
    runs: dict[str, int] = {}
    failures: dict[str, int] = {}
    since: dict[str, int] = {}
    for build in builds[:upto]:
        for name, (outcome, _) in build.items():
            runs[name] = runs.get(name, 0) + 1
            if outcome == "failed":
                failures[name] = failures.get(name, 0) + 1
                since[name] = 0
            elif name in since:
                since[name] += 1
    names = list(builds[upto])
    return sorted(
        names,
        key=lambda t: (
            t in runs,
            since.get(t, math.inf),
            -failures.get(t, 0) / runs[t] if t in runs else 0.0,
            names.index(t),
        ),
    )


def backtest_command(history: Path, *arguments: str) -> str:
    """`riskrank backtest` on a history, 10 builds of warm-up, no training,
    in the history's folder; its output, Rich's wrapping undone."""
    ran = riskrank(
        "backtest",
        str(history),
        *("--warmup", "10", "--retrain-every", "0", *arguments),
        env=clean_env(),
        cwd=history.parent,
    )
    assert ran.returncode == 0, ran.explain()
    return one_line(ran.stdout)


def test_paired_figures_recomputed_from_the_orderings(tmp_path: Path) -> None:
    builds = random_builds()
    history = write_builds(tmp_path / "history.jsonl", builds)
    said = backtest_command(history, "--json-out", "out.json", "--orderings", "orders.jsonl")
    assert said.count("vs strongest") == 3  # a row per view, and the footnote
    assert "scored: every build after the warm-up (builds b11 to b36, 26 of 26" in said
    document = json.loads((tmp_path / "out.json").read_text())
    assert list(document["paired"]) == ["all", "changes"]
    assert list(document["paired"]["all"]) == list(summary.PAIRED_MEASURES)
    assert set(document["paired"]["all"]["apfd"]) == {
        "strongest",
        "builds",
        "mean_difference",
        "low",
        "high",
        "wins",
        "losses",
        "ties",
        "verdict",
    }
    assert document["half"]["half"] == "all"
    for name in (NEW_THEN_RECENT, TRANSITIONS):
        assert name in document["orderings"]

    orders = [json.loads(line) for line in (tmp_path / "orders.jsonl").read_text().splitlines()]
    assert [o["build"] for o in orders] == [f"b{n}" for n in range(11, 37)]
    previous: dict[str, bool] = {}
    flags: list[tuple[list[str], list[str], set[str], set[str], dict[str, float]]] = []
    for number, build in enumerate(builds):
        failed = {t for t, (outcome, _) in build.items() if outcome == "failed"}
        changed = {t for t in failed if not previous.get(t, False)}
        previous.update({t: t in failed for t in build})
        if number >= 10:
            mine = orders[number - 10]["order"]
            theirs = new_then_recent(builds, number)
            durations = {t: d for t, (_, d) in build.items()}
            flags.append((mine, theirs, failed, changed, durations))

    def value(
        measure: str, order: list[str], failing: set[str], durations: dict[str, float]
    ) -> float:
        ran = np.array([t in failing for t in order])
        times = np.array([durations[t] for t in order])
        found = {
            "apfd": metrics.apfd(ran),
            "apfdc": metrics.apfdc(ran, times),
            "recall_tests_33": metrics.recall_at_tests(ran, 0.33),
        }[measure]
        assert found is not None
        return found

    checked = 0
    for view in ("all", "changes"):
        for measure in ("apfd", "apfdc", "recall_tests_33"):
            entry = document["paired"][view][measure]
            assert entry["strongest"] == NEW_THEN_RECENT, (view, measure)
            differences = []
            for mine, theirs, failed, changed, durations in flags:
                failing = failed if view == "all" else changed
                if failing:
                    differences.append(
                        value(measure, mine, failing, durations)
                        - value(measure, theirs, failing, durations)
                    )
            low, high = paired.bootstrap_interval(differences)
            assert entry["builds"] == len(differences)
            assert entry["mean_difference"] == pytest.approx(sum(differences) / len(differences))
            assert (entry["low"], entry["high"]) == pytest.approx((low, high))
            assert entry["wins"] == sum(1 for d in differences if d >= 1e-12)
            assert entry["losses"] == sum(1 for d in differences if d <= -1e-12)
            assert entry["ties"] == sum(1 for d in differences if abs(d) < 1e-12)
            assert entry["verdict"] == ("ahead" if low > 0 else "behind" if high < 0 else "tie")
            checked += 1
    assert checked == 6
    assert document["dataset"]["failing_builds"] == {
        "all": document["paired"]["all"]["apfd"]["builds"],
        "changes": document["paired"]["changes"]["apfd"]["builds"],
    }


def test_half_scores_the_first_or_the_second_half(tmp_path: Path) -> None:
    builds = random_builds(count=25)
    reports = list(read_history(write_builds(tmp_path / "history.jsonl", builds)))
    # 25 builds, 10 of warm-up: 15 after it, 7 in the first half, 8 in the second.
    whole = run_backtest(reports, BacktestConfig(warmup=10, retrain_every=0))
    first = run_backtest(reports, BacktestConfig(warmup=10, retrain_every=0, half="first"))
    second = run_backtest(reports, BacktestConfig(warmup=10, retrain_every=0, half="second"))
    assert [r.index for r in whole.records] == list(range(10, 25))
    assert [r.index for r in first.records] == list(range(10, 17))
    assert [r.index for r in second.records] == list(range(17, 25))
    assert first.evaluated == second.evaluated == 15
    # The same replay whichever half is scored: a half's builds, figures and
    # orders are the whole run's.
    whole_rows = summary.per_build(whole, "all")
    assert summary.per_build(first, "all") == whole_rows[:7]
    assert summary.per_build(second, "all") == whole_rows[7:]
    for mine, theirs in zip(second.records, whole.records[7:], strict=True):
        assert all(
            np.array_equal(mine.orders[name], theirs.orders[name]) for name in SIMPLE_ORDERINGS
        )
    document = summary.to_json(second, {"name": "random"})
    assert document["half"]["scored_builds"] == 8
    assert document["half"]["text"] == (
        "scored: the second half of the builds (builds b18 to b25, 8 of 15 after the "
        "warm-up); design choices are made on the first half, figures reported on the second."
    )
    with pytest.raises(BacktestError, match="--half first leaves no build"):
        run_backtest(reports, BacktestConfig(warmup=24, half="first"))
    with pytest.raises(BacktestError, match="half must be one of"):
        run_backtest(reports, BacktestConfig(half="middle"))


def test_half_on_the_command_line(tmp_path: Path) -> None:
    history = write_builds(tmp_path / "history.jsonl", random_builds(count=25))
    said = backtest_command(history, "--half", "second", "--json-out", "out.json")
    assert (
        "scored: the second half of the builds (builds b18 to b25, 8 of 15 after the warm-up); "
        "design choices are made on the first half, figures reported on the second."
    ) in said
    document = json.loads((tmp_path / "out.json").read_text())
    assert document["parameters"]["half"] == "second"
    assert document["dataset"]["evaluated_builds"] == 8
    assert (
        document["paired"]["all"]["apfd"]["builds"] == document["dataset"]["failing_builds"]["all"]
    )
    refused = riskrank("backtest", str(history), "--half", "middle", env=clean_env(), cwd=tmp_path)
    assert refused.returncode == 2
    said = unboxed(refused.stderr)
    assert (
        "Invalid value for '--half': Value error, 'middle' is not one of 'all', 'first', 'second'."
    ) in said
