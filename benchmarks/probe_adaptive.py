"""A probe, not a feature: would an order that adapts as the build runs find
status changes sooner than any fixed order?

A plan is a fixed order. A runner that reports each outcome as it comes
could reorder what is left: once a test fails, the tests that have failed
together with it before move up. This script replays a history build by
build; each build runs "new first, then recently failed" (the strongest
simple ordering on dune-total) and, beside it, the same order adapting:
after each failure of a test A, every test B still to run whose
association with A is at least `--threshold` runs next, the most
associated first, where the association is the share of A's earlier
failures in which B failed too (counted on status changes with
`--on changes`: builds where both newly failed, of those where A newly
failed), smoothed as k / (n + 1). It prints the paired APFD difference per
half of the history with a bootstrap 95% interval, for all failures and
for status changes only (design choices on the first half, `--half
first`; the second half only once they are made).

    .venv/bin/python benchmarks/probe_adaptive.py [HISTORY] [--warm-up 50]
        [--threshold 0.5] [--on changes|failures] [--half first|second|both]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.probe_same_suite import DEFAULT, NEVER, builds_of  # noqa: E402
from scheduler.evaluation import metrics, paired  # noqa: E402


def adapted(
    order: np.ndarray, failed: np.ndarray, association: np.ndarray, threshold: float
) -> np.ndarray:
    """The order as it runs: `order` (positions into the build's tests), and
    after each failure the tests still to run whose `association` with the
    failing one (a square matrix over the build's tests) is at least
    `threshold`, the most associated first, then the rest in order."""
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    pull = np.zeros(len(order))  # the strongest association with a failure so far
    left = np.ones(len(order), dtype=bool)
    result = []
    for _ in range(len(order)):
        pulled = left & (pull >= threshold)
        if pulled.any():
            candidates = np.flatnonzero(pulled)
            # Most associated first; ties in the fixed order.
            best = candidates[np.lexsort((rank[candidates], -pull[candidates]))[0]]
        else:
            candidates = np.flatnonzero(left)
            best = candidates[np.argmin(rank[candidates])]
        result.append(best)
        left[best] = False
        if failed[best]:
            pull = np.maximum(pull, association[best])
    return np.array(result, dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("history", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--warm-up", type=int, default=50)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--on", choices=("changes", "failures"), default="changes")
    parser.add_argument("--half", choices=("first", "second", "both"), default="first")
    args = parser.parse_args()
    if not args.history.exists():
        sys.exit(f"no history at {args.history} (the shared datasets sit beside the repository)")
    builds = builds_of(args.history)
    half = args.warm_up + (len(builds) - args.warm_up) // 2
    index: dict[str, int] = {}
    for tests in builds:
        for t in tests:
            index.setdefault(t, len(index))
    size = len(index)
    together = np.zeros((size, size), dtype=np.float64)  # builds where both (newly) failed
    alone = np.zeros(size, dtype=np.float64)  # builds where the row's test (newly) failed
    last: dict[str, bool] = {}
    last_failure: dict[str, int] = {}
    runs: dict[str, int] = {}
    failures: dict[str, int] = {}
    differences: dict[tuple[str, str], list[float]] = {}
    for number, tests in enumerate(builds):
        names = sorted(tests)
        ids = np.array([index[t] for t in names], dtype=np.int64)
        failed = np.array([tests[t] for t in names])
        changed = np.array([tests[t] and not last.get(t, False) for t in names])
        part = "first" if number < half else "second"
        if number >= args.warm_up and failed.any() and args.half in (part, "both"):
            new = np.array([runs.get(t, 0) == 0 for t in names])
            since = np.array([number - last_failure.get(t, -NEVER) for t in names])
            rate = np.array([failures.get(t, 0) / runs[t] if runs.get(t) else 0.0 for t in names])
            order = np.lexsort((-rate, since, ~new))
            association = together[np.ix_(ids, ids)] / (alone[ids][:, None] + 1.0)
            np.fill_diagonal(association, 0.0)
            probe = adapted(order, failed, association, args.threshold)
            for view, flags in (("all", failed), ("changes", changed)):
                a, b = metrics.apfd(flags[probe]), metrics.apfd(flags[order])
                if a is not None and b is not None:
                    differences.setdefault((view, part), []).append(a - b)
        counted = ids[changed if args.on == "changes" else failed]
        if counted.size:
            together[np.ix_(counted, counted)] += 1.0
            alone[counted] += 1.0
        for t in names:
            last[t] = tests[t]
            runs[t] = runs.get(t, 0) + 1
            failures[t] = failures.get(t, 0) + tests[t]
            if tests[t]:
                last_failure[t] = number
    print(
        f"{args.history.name}: {len(builds)} builds, warm-up {args.warm_up}, halves at {half}; "
        f"threshold {args.threshold}, association on {args.on}"
    )
    print("adaptive minus 'new first, then recently failed', APFD per failing build:")
    for (view, part), values in sorted(differences.items()):
        result = paired.compare(values)
        print(
            f"  {view:8} {part:6} half: {result.mean_difference:+.4f} "
            f"[{result.low:+.4f}, {result.high:+.4f}] over {result.builds} builds, "
            f"W/L/T {result.wins}/{result.losses}/{result.ties}: {result.verdict}"
        )


if __name__ == "__main__":
    main()
