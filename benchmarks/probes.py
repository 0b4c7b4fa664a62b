"""What the probe scripts share (benchmarks/probe_*.py): a history replayed
build by build, the simple ordering "new first, then recently failed" read
from it, and the paired comparison they print.

Import it after putting the repository on sys.path, as the scripts do."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from scheduler.evaluation import paired
from scheduler.ingest.history import HistoryReport, read_history
from scheduler.models.enums import Outcome

ROOT = Path(__file__).resolve().parents[1]
DUNE_TOTAL = ROOT.parent / "shared/datasets/dune-common/dune-total/features-engineered.csv.gz"
FAILING = {Outcome.FAILED, Outcome.ERROR}
NEVER = 10**9
K = TypeVar("K", bound=Hashable)


def _builds(path: Path, key: Callable[[HistoryReport, str], K]) -> list[dict[K, bool]]:
    """Each build's tests, by `key(report, test id)`, and whether each
    failed, oldest first (a failure in any report of the build under the
    same key makes it failed)."""
    builds: dict[str, dict[K, bool]] = {}
    for report in read_history(path):
        tests = builds.setdefault(report.build, {})
        for result in report.results:
            if result.outcome is Outcome.SKIPPED:
                continue
            name = key(report, result.test)
            tests[name] = tests.get(name, False) or result.outcome in FAILING
    return list(builds.values())


def builds_of(path: Path) -> list[dict[str, bool]]:
    """Each build's tests and whether each failed, oldest first (a failure in
    any report of the build makes the test failed)."""
    return _builds(path, lambda _, test: test)


def job_builds_of(path: Path) -> list[dict[tuple[str, str], bool]]:
    """The same per (job, test): the job a report names (HistoryReport.job,
    a RETECS `Variant`), "" where it names none."""
    return _builds(path, lambda report, test: (report.job or "", test))


class History:
    """The outcomes so far, by whatever key a test is known by (its name,
    or its job and name)."""

    def __init__(self) -> None:
        self.last: dict[Hashable, bool] = {}
        self.runs: dict[Hashable, int] = {}
        self.failures: dict[Hashable, int] = {}
        self.last_failure: dict[Hashable, int] = {}

    def changed(self, keys: Sequence[Hashable], failed: Sequence[bool]) -> np.ndarray:
        """Which of the failures are status changes: the test did not fail
        in its previous run (or never ran)."""
        return np.array(
            [f and not self.last.get(k, False) for k, f in zip(keys, failed, strict=True)]
        )

    def keys(
        self, number: int, keys: Sequence[Hashable]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For build `number`'s tests (`keys`): whether each is new, the
        builds since its last failure, its failure rate and its runs."""
        new = np.array([self.runs.get(k, 0) == 0 for k in keys])
        since = np.array([number - self.last_failure.get(k, -NEVER) for k in keys])
        runs = np.array([self.runs.get(k, 0) for k in keys])
        rate = np.array(
            [self.failures.get(k, 0) / r if r else 0.0 for k, r in zip(keys, runs, strict=True)]
        )
        return new, since, rate, runs

    def order(self, number: int, keys: Sequence[Hashable], *, younger_first: bool) -> np.ndarray:
        """Build `number`'s tests (`keys`) as "new first, then recently
        failed, then by failure rate", and then the fewer runs first if
        `younger_first`."""
        new, since, rate, runs = self.keys(number, keys)
        # np.lexsort: the last key sorts first.
        if younger_first:
            return np.lexsort((runs, -rate, since, ~new))
        return np.lexsort((-rate, since, ~new))

    def record(self, number: int, outcomes: Mapping[Hashable, bool]) -> None:
        for key, failed in outcomes.items():
            self.last[key] = failed
            self.runs[key] = self.runs.get(key, 0) + 1
            self.failures[key] = self.failures.get(key, 0) + failed
            if failed:
                self.last_failure[key] = number


def print_paired(
    scored: Mapping[tuple[str, str], Iterable[tuple[float, float]]], *, means: bool = False
) -> None:
    """Per (view, half), the probe's APFD minus the ordering's per failing
    build, with its bootstrap 95% interval, wins, losses, ties and verdict
    (and the two means before it with `means`)."""
    for (view, part), pairs in sorted(scored.items()):
        values = list(pairs)
        result = paired.compare([a - b for a, b in values])
        before = (
            f"{np.mean([a for a, _ in values]):.4f} vs {np.mean([b for _, b in values]):.4f}, "
            if means
            else ""
        )
        print(
            f"  {view:8} {part:6} half: {before}{result.mean_difference:+.4f} "
            f"[{result.low:+.4f}, {result.high:+.4f}] over {result.builds} builds, "
            f"W/L/T {result.wins}/{result.losses}/{result.ties}: {result.verdict}"
        )
