"""How much exploration a live estimate of the miss needs to be precise.

Issue 13 asks the live estimate of the share of failures trimming lets
through (scheduler.planning.monitor.estimate: inverse-propensity weighting
of the exploration sample's failures) to come within ±25% of the true
share in 95% of the windows of 100 builds. How close it can come is set by
how many failures the exploration sample sees, so by the exploration rate
and by how many failures the dropped tests hold. This script measures it
on a real history:

1. it replays the history in the closed loop (`riskrank backtest
   --closed-loop`, default 5% exploration), keeping each build's plan:
   which tests the budget dropped (those not run plus those the
   exploration sample drew) and which of them failed;
2. on those same plans it draws the exploration sample again at each rate
   q of RATES (each dropped test explored with probability q, as plans
   draw it; a build that expanded or escalated ran every test and drops
   nothing), many times, and feeds the tallies to the product's own
   estimator, window by window, as `riskrank backtest` judges the
   estimate;
3. it prints, per rate, the share of the tests run (the budget's, plus q
   of the dropped ones), the share of the windows whose estimate is
   within ±25% of the true share, and how often the estimate's 95%
   interval holds the true share.

The plans stay those of the 5% run: at another rate the closed loop would
learn from more explored rows and plan a little differently; what is
measured here is the sampling noise of the estimate on these plans.

    .venv/bin/python benchmarks/live_estimate.py [--history FILE]
        [--mode fraction --budget 0.33] [--half second] [--draws 200] [--out F]

Results go to benchmarks/results/live_estimate.md."""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DUNE_TOTAL = ROOT.parent / "shared/datasets/dune-common/dune-total/features-engineered.csv.gz"
RESULTS = ROOT / "benchmarks/results"
RATES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.85, 0.95)


@dataclass(frozen=True)
class Build:
    """What one plan of the replay left to the exploration sample."""

    tests: int
    failures: int
    dropped_tests: int  # over the budget: not run, or drawn into the sample
    dropped_failures: int


def replay(
    history: Path, mode: str, budget: float, half: str
) -> tuple[list[Build], dict[str, float]]:
    """The plans of one closed-loop replay, and how its own live estimate
    did (the backtest's `windows_within_tolerance` and
    `windows_true_in_interval`)."""
    from scheduler.backtest import summary
    from scheduler.backtest.runner import BacktestConfig, run_backtest
    from scheduler.ingest.history import read_history
    from scheduler.planning.policy import Policy

    config = BacktestConfig(
        policy=Policy(mode=mode, budget=budget), closed_loop=True, half=half
    ).checked()
    began = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 250 == 0 or done == total:
            print(
                f"replay: {done}/{total} builds ({time.perf_counter() - began:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

    result = run_backtest(read_history(history), config, progress=progress)
    builds = []
    for record in result.records:
        tally = record.tally
        if tally is None:
            continue
        failures = int(record.failed.sum())
        if tally.expanded or tally.exploration_rate >= 1 or record.full_run:
            # Every test ran: nothing for a sample to estimate.
            builds.append(Build(len(record.names), failures, 0, 0))
            continue
        explored = (record.selected_by or {}).get("exploration", 0)
        missed = int((record.failed & ~record.selected).sum())
        builds.append(
            Build(
                len(record.names),
                failures,
                tally.dropped + explored,
                missed + tally.explored_failures,
            )
        )
    own = summary.trimming_figures(result)
    return builds, {
        "within": own["windows_within_tolerance"],
        "covered": own["windows_true_in_interval"],
    }


def judge(builds: list[Build], rate: float, draws: int, window: int) -> dict[str, float]:
    """The estimate's precision at exploration rate `rate` over `draws` samples."""
    from scheduler.backtest.summary import ESTIMATE_TOLERANCE
    from scheduler.planning import monitor

    generator = np.random.default_rng(20261206)
    dropped_failures = np.array([b.dropped_failures for b in builds])
    within = covered = judged = held = 0
    for _ in range(draws):
        explored = generator.binomial(dropped_failures, rate)
        tallies = [
            monitor.Tally(
                caught=b.failures - b.dropped_failures + int(x),
                explored_failures=int(x),
                explored_weight=float(x) / rate,
                exploration_rate=rate,
                dropped=round(b.dropped_tests * (1 - rate)),
            )
            for b, x in zip(builds, explored.tolist(), strict=True)
        ]
        for start in range(0, len(builds) - window + 1, window):
            chunk = slice(start, start + window)
            failures = sum(b.failures for b in builds[chunk])
            if not failures:
                continue
            true = float((dropped_failures[chunk] - explored[chunk]).sum()) / failures
            found = monitor.estimate(tallies[chunk])
            judged += 1
            if found.rate is not None and (
                abs(found.rate - true) <= ESTIMATE_TOLERANCE * true if true else found.rate == 0
            ):
                within += 1
            if found.low is not None and found.high is not None:
                held += 1
                covered += found.low <= true <= found.high
    run = np.mean([(b.tests - b.dropped_tests * (1 - rate)) / b.tests for b in builds if b.tests])
    return {
        "rate": rate,
        "tests_run": float(run),
        "within": within / judged if judged else math.nan,
        "covered": covered / held if held else math.nan,
    }


def needed_rate(failures: float, tolerance: float = 0.25, z: float = 1.96) -> float:
    """The least exploration rate q at which z standard deviations of the
    estimated count of `failures` independent dropped failures stay within
    `tolerance` of it: X ~ Binomial(failures, q), X / q has a relative
    standard deviation of sqrt((1 - q) / (q * failures))."""
    if failures <= 0:
        return math.nan
    return 1.0 / (1.0 + (tolerance / z) ** 2 * failures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=Path, default=DUNE_TOTAL)
    parser.add_argument("--mode", default="fraction")
    parser.add_argument("--budget", type=float, default=0.33)
    parser.add_argument("--half", choices=("first", "second", "all"), default="second")
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS / "live_estimate.md")
    args = parser.parse_args()
    if not args.history.exists():
        raise SystemExit(f"{args.history} not found: ../shared/datasets is needed beside the repo")
    from scheduler.backtest.summary import ESTIMATE_WINDOW

    started = datetime.now(UTC)
    builds, own = replay(args.history, args.mode, args.budget, args.half)
    windows = [
        builds[start : start + ESTIMATE_WINDOW]
        for start in range(0, len(builds) - ESTIMATE_WINDOW + 1, ESTIMATE_WINDOW)
    ]
    per_window = [sum(b.dropped_failures for b in chunk) for chunk in windows]
    failing = [sum(b.failures for b in chunk) for chunk in windows]
    rows = []
    for rate in RATES:
        row = judge(builds, rate, args.draws, ESTIMATE_WINDOW)
        rows.append(row)
        print(
            f"exploration {rate:.0%}: {row['tests_run']:.1%} of the tests run, estimate within "
            f"±25% in {row['within']:.1%} of the windows, interval holds the truth in "
            f"{row['covered']:.1%}",
            flush=True,
        )
    average = float(np.mean(per_window)) if per_window else math.nan
    lines = [
        "# How much exploration a precise live estimate needs",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC with `.venv/bin/python benchmarks/live_estimate.py"
        + ("" if args.history == DUNE_TOTAL else f" --history {args.history}")
        + f" --mode {args.mode} --budget {args.budget:g} --half {args.half} --draws {args.draws}`:"
        f" {args.history.name} ({args.history.parent.name}), the {args.half} half "
        f"({len(builds)} builds, {len(windows)} window{'' if len(windows) == 1 else 's'} of "
        f"{ESTIMATE_WINDOW}), the plans of "
        "one closed-loop replay at the default 5% exploration, the exploration sample drawn "
        f"again {args.draws} times at each rate.",
        "",
        "Failures over the budget (dropped, or drawn into the sample) per window: "
        + ", ".join(str(n) for n in per_window)
        + f" (a mean of {average:.1f}), of "
        + ", ".join(str(n) for n in failing)
        + " failures. With the mean window's count N of independent failures, ±25% in 95% "
        f"of windows needs an exploration rate of at least {needed_rate(average):.1%} "
        "(the estimated count X / q has a relative standard deviation of "
        "sqrt((1 - q) / (q · N))); failures that come together in one build need more, and "
        "a window whose true share is 0 is judged within only if its estimate is 0.",
        "",
        "The replay's own estimate (its 5% sample, as `riskrank backtest` reports it): "
        f"within ±25% in {own['within']:.0%} of the windows, the truth in its interval in "
        f"{own['covered']:.0%}.",
        "",
        "| exploration rate | tests run | estimate within ±25% | 95% interval holds the truth |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['rate']:.0%} | {row['tests_run']:.1%} | {row['within']:.1%} | "
            f"{row['covered']:.1%} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
