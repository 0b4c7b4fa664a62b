"""Does keeping a test's history per CI job make riskrank's order better,
judged on the same rows?

`riskrank backtest --jobs-apart` scores riskrank and the simple orderings on
(job, test) rows, the default on tests merged over a build's jobs: their
figures are not on the same rows. This replays a history that names its
jobs (dune-total's `data-variants.csv.gz` by default) both ways, in one
run, and scores every ordering on the (job, test) rows: an order of merged
tests runs each test's rows together, in the history's order. Status
changes are per (job, test). Paired per failing build with a bootstrap 95%
interval (`scheduler.evaluation.paired`), on the half of the builds after
the warm-up given by --half.

    .venv/bin/python benchmarks/jobs_apart.py [HISTORY] [--half second|first|all]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.probes import print_paired  # noqa: E402
from scheduler.backtest.runner import (  # noqa: E402
    HALVES,
    NEW_THEN_RECENT,
    RISKRANK,
    BacktestConfig,
    BuildRecord,
    run_backtest,
)
from scheduler.evaluation import metrics  # noqa: E402
from scheduler.ingest.history import read_history  # noqa: E402
from scheduler.ingest.testid import split_job  # noqa: E402

DEFAULT = ROOT.parent / "shared/datasets/dune-common/dune-total/data-variants.csv.gz"


def on_rows(merged: BuildRecord, ordering: str, rows: tuple[str, ...]) -> np.ndarray:
    """A merged build's order as an order of the (job, test) rows: each
    test's rows together, in the rows' order."""
    rank = {merged.names[i]: place for place, i in enumerate(merged.orders[ordering].tolist())}
    return np.array(sorted(range(len(rows)), key=lambda i: (rank[split_job(rows[i])[0]], i)))


def progress(label: str) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            print(f"  {label}: {done}/{total} builds", file=sys.stderr, flush=True)

    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("history", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--half", choices=HALVES, default="second")
    args = parser.parse_args()
    if not args.history.exists():
        sys.exit(f"no history at {args.history} (the shared datasets sit beside the repository)")
    reports = list(read_history(args.history))
    config = BacktestConfig(half=args.half)
    merged = run_backtest(reports, config, progress=progress("merged"))
    apart = run_backtest(
        reports, BacktestConfig(half=args.half, jobs_apart=True), progress=progress("jobs apart")
    )
    scored: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for by_job, by_name in zip(apart.records, merged.records, strict=True):
        assert by_job.build == by_name.build
        orders = {
            "riskrank": by_job.orders[RISKRANK],
            "riskrank merged": on_rows(by_name, RISKRANK, by_job.names),
            "simple": by_job.orders[NEW_THEN_RECENT],
            "simple merged": on_rows(by_name, NEW_THEN_RECENT, by_job.names),
        }
        for view, flags in (("all", by_job.failed), ("changes", by_job.changed)):
            apfd = {name: metrics.apfd(flags[order]) for name, order in orders.items()}
            for a, b in (
                ("riskrank", "riskrank merged"),
                ("simple", "simple merged"),
                ("riskrank", "simple"),
            ):
                first, second = apfd[a], apfd[b]
                if first is not None and second is not None:
                    scored.setdefault((view, f"{a} - {b}"), []).append((first, second))
    print(
        f"{args.history.name}, {args.half} half: {len(apart.records)} builds scored; "
        f"served by a model: {sum(r.model_version is not None for r in apart.records)} "
        f"kept per job, {sum(r.model_version is not None for r in merged.records)} merged"
    )
    print("APFD per failing build on the (job, test) rows")
    print('("simple": new first, then recently failed)')
    for (view, pair), values in sorted(scored.items()):
        print(f"  {pair}:")
        print_paired({(view, args.half): values}, means=True)


if __name__ == "__main__":
    main()
