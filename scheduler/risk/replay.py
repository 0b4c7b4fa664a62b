"""Replaying a repository's history build by build, in memory: for each
build, the features of its tests as they were just before it (point in time)
and what happened to them. This is where training rows come from, for
imported history and live results alike, and what a backtest walks through.

The state is folded with the same function as live ingestion
(`scheduler.risk.tally.advance`), so a replayed feature vector is
the one scoring would have produced at that moment."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from scheduler.ingest import hunks
from scheduler.ingest.history import FileChange, HistoryReport, changed_lines
from scheduler.ingest.results import final_results
from scheduler.outcomes import Outcome
from scheduler.risk import tally
from scheduler.risk.columns import ChangeColumns, HistoryColumns, LinkColumns
from scheduler.risk.features import FeatureMatrix, build_features
from scheduler.risk.links import EMPTY_LINK, Link, decayed
from scheduler.risk.paths import PathIndex

WORSE = {Outcome.PASSED: 0, Outcome.FAILED: 1, Outcome.ERROR: 2}
FAILING = frozenset((Outcome.FAILED, Outcome.ERROR))


@dataclass
class Build:
    """One build: its tests' final outcomes (skips left out), the changed
    paths of its commit and its changed lines (None unless every changed file
    says them, as scoring reads them), the symbols its files' hunks name
    (distinct, sorted), and when it ran."""

    key: str
    at: datetime
    paths: tuple[str, ...]
    changed_lines: int | None = None
    symbols: tuple[str, ...] = ()
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    durations: dict[str, float | None] = field(default_factory=dict)
    flaky: set[str] = field(default_factory=set)
    files: dict[str, str | None] = field(default_factory=dict)
    # The tests that ran only because a plan's exploration sample drew them,
    # with the probability it drew them with (the plan's logged propensity);
    # every other test ran for sure (the budget, a rule, a full run, a
    # history without plans). Filled by `load_builds` from the plans' records.
    selection: dict[str, float] = field(default_factory=dict)


# When a history gives no time for a build (the replay only needs an order,
# and test ages in days): builds without one are a day after the one before.
_NO_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def builds_from_reports(reports: Iterable[HistoryReport]) -> list[Build]:
    """The builds of a history file, in memory, as
    `scheduler.services.builds.load_builds` reads them
    back after `riskrank import` (tested): reports with the same build id are
    one build (its worst final outcome per test wins), and a test is flaky in
    a build when a report reruns it with a different outcome, or when an
    earlier build of the same commit disagrees with it (a retried CI job).

    This is what lets a backtest or a benchmark replay a history without a
    database; the training code replays what `load_builds` gives, and both
    go through the same `Replayer`."""
    builds: dict[str, Build] = {}
    # commit -> build key -> test -> outcomes seen (passed or not)
    seen: dict[str, dict[str, dict[str, set[bool]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(set))
    )
    previous = _NO_TIME
    for report in reports:
        key = f"{report.commit}/{report.build}"
        build = builds.get(key)
        if build is None:
            at = report.time or datetime.fromtimestamp(previous.timestamp() + 86400, UTC)
            # A path listed twice is stored once, by its first row (import).
            changes: dict[str, FileChange] = {}
            for change in report.changed_files:
                changes.setdefault(change.path, change)
            build = builds[key] = Build(
                key=key,
                at=at,
                paths=tuple(sorted(changes)),
                changed_lines=changed_lines(
                    (changes[path].additions, changes[path].deletions) for path in sorted(changes)
                ),
                symbols=hunks.changed_symbols(change.hunks for change in changes.values()),
            )
            previous = at
        passed: dict[str, set[bool]] = defaultdict(set)
        for result in report.results:
            build.files.setdefault(result.test, result.file)
            if result.outcome is not Outcome.SKIPPED:
                passed[result.test].add(result.outcome is Outcome.PASSED)
        earlier: dict[str, set[bool]] = defaultdict(set)
        for other, tests in seen[report.commit].items():
            if other != key:
                for name, outcomes in tests.items():
                    earlier[name] |= outcomes
        for name, outcomes in passed.items():
            if outcomes | earlier.get(name, set()) == {True, False}:
                build.flaky.add(name)
            seen[report.commit][key][name] |= outcomes
        for name, result in final_results(report.results).items():
            if result.outcome is Outcome.SKIPPED:
                continue
            current = build.outcomes.get(name)
            if current is None or WORSE[result.outcome] > WORSE[current]:
                build.outcomes[name] = result.outcome
                build.durations[name] = result.duration
    return list(builds.values())


@dataclass(frozen=True)
class HistoryCounts:
    """What a history holds, counted as a backtest evaluates it."""

    builds: int
    tests: int  # distinct tests with an outcome (skips left out)
    failing_builds: int
    failures: int  # (build, test) pairs that failed
    status_changes: int  # failures of a test that did not fail in its previous run
    status_change_builds: int


def count_history(builds: Sequence[Build]) -> HistoryCounts:
    """The counts of `builds` (in time order). A status change is a test that
    fails and did not fail in its previous run, or never ran before: the
    regressions a change introduces (as the backtest's status-change view)."""
    failed_last: dict[str, bool] = {}
    failing_builds = failures = changes = change_builds = 0
    for build in builds:
        failing = {name for name, outcome in build.outcomes.items() if outcome in FAILING}
        new = sum(1 for name in failing if not failed_last.get(name, False))
        failing_builds += int(bool(failing))
        failures += len(failing)
        changes += new
        change_builds += int(new > 0)
        for name in build.outcomes:
            failed_last[name] = name in failing
    return HistoryCounts(
        builds=len(builds),
        tests=len(failed_last),
        failing_builds=failing_builds,
        failures=failures,
        status_changes=changes,
        status_change_builds=change_builds,
    )


@dataclass
class BuildRows:
    """One build's candidates, their features and what became of them."""

    index: int  # the build's position in time order
    build: Build
    tests: tuple[str, ...]
    matrix: FeatureMatrix
    failed: npt.NDArray[np.bool_]
    durations: npt.NDArray[np.float64]


@dataclass
class Replayer:
    """The statistics of every test as the builds go by, in memory."""

    tallies: dict[str, tally.Tally] = field(default_factory=dict)
    first_seen: dict[str, datetime] = field(default_factory=dict)
    # path -> test -> what they did together (scheduler.risk.links)
    links: dict[str, dict[str, Link]] = field(default_factory=lambda: defaultdict(dict))
    # Builds folded so far: the repository's build number, as live
    # ingestion counts it (Repository.build_count), that links are valued at.
    builds: int = 0
    files: dict[str, str | None] = field(default_factory=dict)
    index: PathIndex | None = None

    def features(self, build: Build, tests: Sequence[str]) -> FeatureMatrix:
        """The features of `tests` for `build`, from the state before it."""
        empty = tally.Tally()
        tallies = [self.tallies.get(name, empty) for name in tests]
        history = HistoryColumns.from_sequences(
            names=tests,
            files=[self.files.get(name) for name in tests],
            runs=[t.runs for t in tallies],
            failures=[t.failures for t in tallies],
            recent=[t.recent for t in tallies],
            builds_since_failure=[t.builds_since_failure for t in tallies],
            flips=[t.flips for t in tallies],
            flaky_runs=[t.flaky_runs for t in tallies],
            duration_mean=[t.duration_mean for t in tallies],
            first_seen=[self.first_seen.get(name) for name in tests],
        )
        change = ChangeColumns.of(build.paths, build.changed_lines, build.symbols)
        test_rows, path_rows, ran, failed, valued_at = [], [], [], [], []
        if build.paths:
            row_of = {name: row for row, name in enumerate(tests)}
            for path_row, path in enumerate(build.paths):
                for name, link in self.links.get(path, {}).items():
                    row = row_of.get(name)
                    if row is not None:
                        test_rows.append(row)
                        path_rows.append(path_row)
                        ran.append(link.changed_together)
                        failed.append(link.failed_together)
                        valued_at.append(link.valued_at)
        links = LinkColumns.from_sequences(
            test_index=test_rows,
            path_index=path_rows,
            changed_together=decayed(ran, valued_at, self.builds),
            failed_together=decayed(failed, valued_at, self.builds),
        )
        index = self.index
        if index is None:
            index = PathIndex(history.names, history.files)
        elif index.rows(history.names) is None:
            index = index.covering(history.names, history.files)
        self.index = index
        return build_features(history, change, links, at=build.at, index=index)

    def fold(self, build: Build) -> None:
        """Take the build's outcomes into the state (after its features). A
        build with a result (a skip too) is a build of the repository, as
        live ingestion counts them."""
        if build.files:
            self.builds += 1
        for name, file in build.files.items():
            self.files.setdefault(name, file)
            self.first_seen.setdefault(name, build.at)
        for name, outcome in build.outcomes.items():
            step = tally.advance(
                self.tallies.get(name) or tally.Tally(),
                tally.Observation(outcome, build.durations.get(name), name in build.flaky),
                build=build.key,
                at=build.at,
            )
            self.tallies[name] = step.state
            if step.new_build or step.status_change:
                for path in build.paths:
                    tests = self.links[path]
                    tests[name] = tests.get(name, EMPTY_LINK).add(
                        ran=step.new_build, failed=step.status_change, build=self.builds
                    )


def replay(builds: Sequence[Build]) -> Iterator[BuildRows]:
    """Each build's rows, with features from the builds before it only."""
    replayer = Replayer()
    for number, build in enumerate(builds):
        tests = tuple(sorted(build.outcomes))
        if tests:
            matrix = replayer.features(build, tests)
            failed = np.array(
                [build.outcomes[name] is not Outcome.PASSED for name in tests], dtype=bool
            )
            durations = np.array(
                [build.durations.get(name) or 0.0 for name in tests], dtype=np.float64
            )
            yield BuildRows(number, build, tests, matrix, failed, durations)
        replayer.fold(build)


# A training row of the exploration sample counts at most this many times.
# 20 is 1/p at the default exploration rate (5%), so the cap does not bite
# there; it bounds a repository that explores less: at 0.1% one failing row
# would weigh as much as a thousand, and a leaf of one explored failure
# would be fit to it (the variance inverse-propensity weighting is known for).
MAX_SELECTION_WEIGHT = 20.0


def selection_weights(
    builds: Sequence[Build], cap: float = MAX_SELECTION_WEIGHT
) -> npt.NDArray[np.float64]:
    """The weight of every row of `training_rows(builds)`, in its order: a
    test the exploration sample ran with probability p stands for 1/p tests
    (capped at `cap`), so the learner is not biased toward what the budget
    chose to run; every other row counts once. Self-normalised: the weights
    are scaled to add up to the number of rows, so that the loss, the
    regularisation and the leaf sizes keep the scale they have unweighted."""
    parts = []
    for build in builds:
        tests = sorted(build.outcomes)
        if not tests:
            continue  # no row (as `replay` yields none)
        parts.append(
            np.fromiter(
                (
                    min(cap, 1.0 / p) if (p := build.selection.get(name)) and p < 1.0 else 1.0
                    for name in tests
                ),
                dtype=np.float64,
                count=len(tests),
            )
        )
    if not parts:
        return np.zeros(0, dtype=np.float64)
    weights = np.concatenate(parts)
    scaled: npt.NDArray[np.float64] = weights * (weights.size / weights.sum())
    return scaled


def training_rows(
    builds: Sequence[Build],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """Features, labels and build indexes of every replayed row."""
    matrices, labels, indexes = [], [], []
    for rows in replay(builds):
        matrices.append(rows.matrix.values)
        labels.append(rows.failed)
        indexes.append(np.full(len(rows.tests), rows.index, dtype=np.int64))
    if not matrices:
        return (
            np.zeros((0, 0), dtype=np.float32),
            np.zeros(0, dtype=bool),
            np.zeros(0, dtype=np.int64),
        )
    return np.vstack(matrices), np.concatenate(labels), np.concatenate(indexes)
