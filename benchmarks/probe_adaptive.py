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

from benchmarks.probes import DUNE_TOTAL, History, builds_of, print_paired  # noqa: E402
from scheduler.evaluation import metrics  # noqa: E402


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
    parser.add_argument("history", nargs="?", type=Path, default=DUNE_TOTAL)
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
    history = History()
    # (view, half) -> per build, (the adapting order's APFD, the fixed one's)
    scored: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for number, tests in enumerate(builds):
        names = sorted(tests)
        ids = np.array([index[t] for t in names], dtype=np.int64)
        failed = np.array([tests[t] for t in names])
        changed = history.changed(names, failed.tolist())
        part = "first" if number < half else "second"
        if number >= args.warm_up and failed.any() and args.half in (part, "both"):
            order = history.order(number, names, younger_first=False)
            association = together[np.ix_(ids, ids)] / (alone[ids][:, None] + 1.0)
            np.fill_diagonal(association, 0.0)
            probe = adapted(order, failed, association, args.threshold)
            for view, flags in (("all", failed), ("changes", changed)):
                a, b = metrics.apfd(flags[probe]), metrics.apfd(flags[order])
                if a is not None and b is not None:
                    scored.setdefault((view, part), []).append((a, b))
        counted = ids[changed if args.on == "changes" else failed]
        if counted.size:
            together[np.ix_(counted, counted)] += 1.0
            alone[counted] += 1.0
        history.record(number, tests)
    print(
        f"{args.history.name}: {len(builds)} builds, warm-up {args.warm_up}, halves at {half}; "
        f"threshold {args.threshold}, association on {args.on}"
    )
    print("adaptive minus 'new first, then recently failed', APFD per failing build:")
    print_paired(scored)


if __name__ == "__main__":
    main()
