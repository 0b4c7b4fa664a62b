"""Trimming in the closed loop, over several exploration samples: each
setting replayed as `riskrank backtest --closed-loop` does, once per
exploration seed, and its figures given as the mean with the lowest and
highest run beside it. One closed-loop run moves by points on one explored
failure more or less (every later plan, and whether a model is promoted,
follows from what the plans ran), so one run says less than its figures
suggest; the spread over seeds says how much less.

    .venv/bin/python benchmarks/closed_loop.py [--history FILE] [--half second|first|all]
        [--setting MODE:BUDGET ...] [--seeds N] [--workers N] [--out F]

Defaults: dune-total's second half (design choices are made on the first
half, figures reported on the second), the settings issue 13 names
(`confidence` 0.8, 0.9, 0.95 and `fraction` 0.33), seeds 0, 1 and 2 (seed 0
is the plain `riskrank backtest` run), two processes. Results go to
benchmarks/results/closed_loop.md."""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from statistics import mean
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DUNE_TOTAL = ROOT.parent / "shared/datasets/dune-common/dune-total/features-engineered.csv.gz"
RESULTS = ROOT / "benchmarks/results"
SETTINGS = ("confidence:0.8", "confidence:0.9", "confidence:0.95", "fraction:0.33")
# Per setting: the figure, and how it is printed.
FIGURES = (
    ("tests run", "tests_share", "{:.1%}"),
    ("all failures kept", "failures_kept_share", "{:.1%}"),
    ("kept per failing build", "failures_kept_per_failing_build", "{:.2%}"),
    ("failing builds caught", "caught_all", "{:.2%}"),
    ("builds escalated", "escalated_builds", "{:.0f}"),
    ("stated dropped per build", "expected_failures_dropped", "{:.3f}"),
    ("dropped per build", "failures_dropped", "{:.3f}"),
)


def replay(history: Path, half: str, setting: str, seed: int) -> dict[str, Any]:
    """One closed-loop backtest; its figures by FIGURES' keys."""
    from scheduler.backtest import summary
    from scheduler.backtest.runner import BacktestConfig, run_backtest
    from scheduler.ingest.history import read_history
    from scheduler.planning.policy import Policy

    mode, budget = setting.split(":")
    config = BacktestConfig(
        policy=Policy(mode=mode, budget=float(budget)),
        closed_loop=True,
        half=half,
        exploration_seed=seed,
    ).checked()
    began = time.perf_counter()
    result = run_backtest(read_history(history), config)
    held = summary.calibration_figures(result)
    document = summary.trimming_figures(result)
    caught = summary.selection(result)["caught_all"]
    return {
        "setting": setting,
        "seed": seed,
        "seconds": time.perf_counter() - began,
        "tests_share": held["tests_share"],
        "failures_kept_share": held["failures_kept_share"],
        "failures_kept_per_failing_build": held["failures_kept_per_failing_build"],
        "caught_all": caught,
        "escalated_builds": document["escalated_builds"],
        "expected_failures_dropped": held["expected_failures_dropped"],
        "failures_dropped": held["failures_dropped"],
        "builds": held["builds"],
        "failing_builds": held["failing_builds"],
    }


def cell(runs: list[dict[str, Any]], key: str, shape: str) -> str:
    values = [float(run[key]) for run in runs if run[key] is not None]
    if not values:
        return "-"
    low, high = min(values), max(values)
    return f"{shape.format(mean(values))} [{shape.format(low)}, {shape.format(high)}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=Path, default=DUNE_TOTAL)
    parser.add_argument("--half", choices=("first", "second", "all"), default="second")
    parser.add_argument("--setting", action="append", help="MODE:BUDGET, e.g. confidence:0.9")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "closed_loop.md")
    args = parser.parse_args()
    if not args.history.exists():
        raise SystemExit(f"{args.history} not found: ../shared/datasets is needed beside the repo")
    settings = tuple(args.setting or SETTINGS)
    jobs = [(setting, seed) for setting in settings for seed in range(args.seeds)]
    started = datetime.now(UTC)
    runs: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [
            pool.submit(replay, args.history, args.half, setting, seed) for setting, seed in jobs
        ]
        for done, future in enumerate(as_completed(futures), start=1):
            run = future.result()
            runs.append(run)
            print(
                f"[{done}/{len(jobs)}] {run['setting']} seed {run['seed']}: "
                f"{run['tests_share']:.1%} of the tests, {run['failures_kept_share']:.1%} of "
                f"the failures kept, {run['caught_all']:.2%} of failing builds caught "
                f"({run['seconds']:.0f} s)",
                flush=True,
            )
    first = runs[0]
    lines = [
        "# Trimming in the closed loop, over exploration seeds",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC with `.venv/bin/python benchmarks/closed_loop.py"
        f" --half {args.half} --seeds {args.seeds}`: {args.history.name} "
        f"({args.history.parent.name}), the {args.half} half ({first['builds']} builds, "
        f"{first['failing_builds']} failing), the backtest's defaults (escalation and "
        "expansion on), exploration seeds "
        f"0 to {args.seeds - 1} (seed 0 is the plain `riskrank backtest --closed-loop` run). "
        "Each cell: the mean over the seeds [the lowest run, the highest].",
        "",
        "| setting | " + " | ".join(name for name, _, _ in FIGURES) + " |",
        "|---|" + "---|" * len(FIGURES),
    ]
    for setting in settings:
        mine = sorted((run for run in runs if run["setting"] == setting), key=lambda r: r["seed"])
        lines.append(
            f"| `{setting.replace(':', ' ')}` | "
            + " | ".join(cell(mine, key, shape) for _, key, shape in FIGURES)
            + " |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
