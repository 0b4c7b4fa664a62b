"""A probe, not a feature: would a test's history kept per CI job (the
matrix variant: OS, compiler) order its failures better than one history
per test name?

riskrank keys a test by its name: when a project's CI runs the same tests
in several jobs, a test red on one job and green on the others looks, at
every build, as if it had just changed status. dune-total's
`data-variants.csv.gz` names the variant of every row (builds from
2018-12; from 2020-05 a build runs more than one variant). This script
replays it build by build and orders each build's rows (one per job and
test) by "new first, then recently failed, then failure rate, then the
fewer runs" twice: from one history per test name (the outcomes of all the
build's jobs merged, a failure in any making it failed, as riskrank counts
a test listed twice) and from one history per (job, test). Both are
scored on the same rows, with status changes per (job, test), and paired
per failing build with a bootstrap 95% interval, per half of the history.

    .venv/bin/python benchmarks/probe_job_history.py [VARIANTS_CSV] [--warm-up 50]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.probes import History, job_builds_of, print_paired  # noqa: E402
from scheduler.evaluation import metrics  # noqa: E402

DEFAULT = ROOT.parent / "shared/datasets/dune-common/dune-total/data-variants.csv.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("history", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--warm-up", type=int, default=50)
    args = parser.parse_args()
    if not args.history.exists():
        sys.exit(f"no history at {args.history} (the shared datasets sit beside the repository)")
    builds = job_builds_of(args.history)
    half = args.warm_up + (len(builds) - args.warm_up) // 2
    by_name, by_job = History(), History()
    # (view, half) -> per build, (the APFD per job, per name)
    scored: dict[tuple[str, str], list[tuple[float, float]]] = {}
    jobs_per_build: dict[str, list[int]] = {"first": [], "second": []}
    for number, rows in enumerate(builds):
        keys = sorted(rows)
        failed = np.array([rows[k] for k in keys])
        changed = by_job.changed(keys, failed.tolist())
        part = "first" if number < half else "second"
        if number >= args.warm_up:
            jobs_per_build[part].append(len({job for job, _ in keys}))
            if failed.any():
                per_job = by_job.order(number, keys, younger_first=True)
                per_name = by_name.order(number, [name for _, name in keys], younger_first=True)
                for view, flags in (("all", failed), ("changes", changed)):
                    a, b = metrics.apfd(flags[per_job]), metrics.apfd(flags[per_name])
                    if a is not None and b is not None:
                        scored.setdefault((view, part), []).append((a, b))
        merged: dict[str, bool] = {}
        for (_, name), value in rows.items():
            merged[name] = merged.get(name, False) or value
        by_name.record(number, merged)
        by_job.record(number, rows)
    print(f"{args.history.name}: {len(builds)} builds, warm-up {args.warm_up}, halves at {half}")
    for part, counts in jobs_per_build.items():
        if counts:
            print(
                f"  {part} half: {np.mean(counts):.2f} jobs per build, "
                f"{sum(c > 1 for c in counts)} of {len(counts)} builds with more than one"
            )
    print("one history per (job, test) minus one per test name, APFD per failing build:")
    print_paired(scored, means=True)


if __name__ == "__main__":
    main()
