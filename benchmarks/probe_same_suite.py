"""A probe, not a feature: would "the test's outcome in the last build that ran
the same set of tests" order a history's status changes better?

dune-total mixes CI variants (compilers, distributions) in one history, and a
test red on one variant and green on another looks like a status change at
every switch. riskrank knows which tests a build collects, so the build with
the same set of tests is a stand-in for "the same job". This script scores,
on every build after the warm-up, "new first, then recently failed" (the
strongest simple ordering on dune-total) against the same ordering with that
signal placed after the new tests, and prints the paired APFD difference per
half of the history, with a bootstrap 95% interval, for all failures and for
status changes only. What it printed is in docs/model.md; the signal was not
built (the first half, where choices are made, shows a tie).

    .venv/bin/python benchmarks/probe_same_suite.py [HISTORY] [--warm-up 50]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.probes import DUNE_TOTAL, History, builds_of, print_paired
from scheduler.evaluation import metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("history", nargs="?", type=Path, default=DUNE_TOTAL)
    parser.add_argument("--warm-up", type=int, default=50)
    args = parser.parse_args()
    if not args.history.exists():
        sys.exit(f"no history at {args.history} (the shared datasets sit beside the repository)")
    builds = builds_of(args.history)
    half = args.warm_up + (len(builds) - args.warm_up) // 2
    history = History()
    same_suite: dict[tuple[frozenset[str], str], bool] = {}
    # (view, half) -> per build, (the probe's APFD, the ordering's)
    scored: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for number, tests in enumerate(builds):
        names = sorted(tests)
        suite = frozenset(names)
        if number >= args.warm_up:
            failed = np.array([tests[t] for t in names])
            changed = history.changed(names, failed.tolist())
            ordering = history.order(number, names, younger_first=False)
            # The same keys with the signal placed after the new tests.
            new, since, rate, _ = history.keys(number, names)
            red_there = np.array([same_suite.get((suite, t), False) for t in names])
            probe = np.lexsort((-rate, since, ~red_there, ~new))
            part = "first" if number < half else "second"
            for view, flags in (("all", failed), ("changes", changed)):
                a, b = metrics.apfd(flags[probe]), metrics.apfd(flags[ordering])
                if a is not None and b is not None:
                    scored.setdefault((view, part), []).append((a, b))
        history.record(number, tests)
        for t in names:
            same_suite[(suite, t)] = tests[t]
    print(f"{args.history.name}: {len(builds)} builds, warm-up {args.warm_up}, halves at {half}")
    print("probe minus 'new first, then recently failed', APFD per failing build:")
    print_paired(scored)


if __name__ == "__main__":
    main()
