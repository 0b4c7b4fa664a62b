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
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scheduler.evaluation import metrics, paired  # noqa: E402
from scheduler.ingest.history import read_history  # noqa: E402
from scheduler.models.enums import Outcome  # noqa: E402

DEFAULT = ROOT.parent / "shared/datasets/dune-common/dune-total/features-engineered.csv.gz"
FAILING = {Outcome.FAILED, Outcome.ERROR}
NEVER = 10**9


def builds_of(path: Path) -> list[dict[str, bool]]:
    """Each build's tests and whether each failed, oldest first (a failure in
    any report of the build makes the test failed)."""
    builds: dict[str, dict[str, bool]] = {}
    for report in read_history(path):
        tests = builds.setdefault(report.build, {})
        for result in report.results:
            if result.outcome is Outcome.SKIPPED:
                continue
            tests[result.test] = tests.get(result.test, False) or result.outcome in FAILING
    return list(builds.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("history", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--warm-up", type=int, default=50)
    args = parser.parse_args()
    if not args.history.exists():
        sys.exit(f"no history at {args.history} (the shared datasets sit beside the repository)")
    builds = builds_of(args.history)
    half = args.warm_up + (len(builds) - args.warm_up) // 2
    last: dict[str, bool] = {}
    last_failure: dict[str, int] = {}
    runs: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    same_suite: dict[tuple[frozenset[str], str], bool] = {}
    # (view, half) -> per build, the probe's APFD minus the ordering's
    differences: dict[tuple[str, str], list[float]] = {}
    for number, tests in enumerate(builds):
        names = sorted(tests)
        suite = frozenset(names)
        if number >= args.warm_up:
            failed = np.array([tests[t] for t in names])
            changed = np.array([tests[t] and not last.get(t, False) for t in names])
            new = np.array([runs[t] == 0 for t in names])
            since = np.array([number - last_failure.get(t, -NEVER) for t in names])
            rate = np.array([failures[t] / runs[t] if runs[t] else 0.0 for t in names])
            red_there = np.array([same_suite.get((suite, t), False) for t in names])
            # np.lexsort: the last key sorts first.
            ordering = np.lexsort((-rate, since, ~new))
            probe = np.lexsort((-rate, since, ~red_there, ~new))
            part = "first" if number < half else "second"
            for view, flags in (("all", failed), ("changes", changed)):
                a, b = metrics.apfd(flags[probe]), metrics.apfd(flags[ordering])
                if a is not None and b is not None:
                    differences.setdefault((view, part), []).append(a - b)
        for t in names:
            last[t] = tests[t]
            runs[t] += 1
            failures[t] += tests[t]
            if tests[t]:
                last_failure[t] = number
            same_suite[(suite, t)] = tests[t]
    print(f"{args.history.name}: {len(builds)} builds, warm-up {args.warm_up}, halves at {half}")
    print("probe minus 'new first, then recently failed', APFD per failing build:")
    for (view, part), values in sorted(differences.items()):
        result = paired.compare(values)
        print(
            f"  {view:8} {part:6} half: {result.mean_difference:+.4f} "
            f"[{result.low:+.4f}, {result.high:+.4f}] over {result.builds} builds, "
            f"W/L/T {result.wins}/{result.losses}/{result.ties}: {result.verdict}"
        )


if __name__ == "__main__":
    main()
