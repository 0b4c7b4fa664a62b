"""Folding reports into history: executions, known tests, per-test
statistics and file-test links.

An Ingestor takes reports one by one, in the order they happened, keeps what
it learns in memory and writes it all at `flush()`: a live report is one
ingest and one flush; an imported history flushes once per batch of builds,
so the statistics of a test that runs in every build are written once per
batch instead of once per build. Either way the same code folds every report.
The caller's transaction holds it all; nothing here commits."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Text, any_, bindparam, case, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from scheduler.ingest.results import CaseResult, final_results
from scheduler.models import (
    ChangedFile,
    Execution,
    FileTestLink,
    KnownTest,
    KnownTestStats,
    Outcome,
    Repository,
    StatsChange,
    SuiteRun,
)
from scheduler.models.base import utcnow
from scheduler.risk import tally
from scheduler.risk.links import EMPTY_LINK, Link
from scheduler.services.sql import (
    BULK_CHUNK,
    CHUNK,
    bulk_insert_ignoring,
    chunks,
    insert_upserting,
    table_of,
    upsert_adding,
)

STATS_COLUMNS = (
    "runs",
    "failures",
    "last_outcome",
    "builds_since_failure",
    "recent",
    "flips",
    "flaky_runs",
    "duration_mean",
    "duration_count",
    "last_build",
    "last_run_at",
    "last_failure_at",
)


@dataclass(frozen=True)
class IngestSummary:
    tests: int
    executions: int
    new_tests: int
    flaky: int


@dataclass
class _Seen:
    """A known test's first and last appearance among the pending reports."""

    name: str
    file: str | None
    first: datetime
    last: datetime


@dataclass
class Ingestor:
    session: Session
    repository_id: int
    _ids: dict[str, int] = field(default_factory=dict)
    _tallies: dict[int, tally.Tally] = field(default_factory=dict)
    _dirty: set[int] = field(default_factory=set)
    _seen: dict[int, _Seen] = field(default_factory=dict)
    # Tests this Ingestor created, and when: their row needs no update at
    # flush while they were seen at that time only (a first report of
    # 100,000 tests would otherwise write each row twice).
    _created: dict[int, datetime] = field(default_factory=dict)
    _executions: list[dict[str, Any]] = field(default_factory=list)
    # (path, test id) -> the link as it stands, for every link of the paths
    # in _link_paths (read once per flush), and the ones changed since.
    _links: dict[tuple[str, int], Link] = field(default_factory=dict)
    _link_paths: set[str] = field(default_factory=set)
    _changed_links: set[tuple[str, int]] = field(default_factory=set)
    # The repository's count of builds and its newest build's key
    # (Repository.build_count, last_build), read with the row locked at the
    # first report: links are valued at build numbers.
    _build_count: int | None = None
    _last_build: str | None = None
    _build_changed: bool = False
    # Outcomes (passed?) per commit, build and test among the pending
    # executions, for flakiness across builds of one commit.
    _pending_outcomes: dict[int, dict[str, dict[int, set[bool]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(set)))
    )
    # (commit, run key, test): mark the test's executions in the commit's
    # other builds flaky too.
    _flaky_elsewhere: list[tuple[int, str | None, int]] = field(default_factory=list)

    # --- reading what is known -------------------------------------------------

    def _fetch_ids(self, names: Sequence[str]) -> None:
        postgres = self.session.get_bind().dialect.name == "postgresql"
        for part in chunks(names, BULK_CHUNK if postgres else CHUNK):
            # On PostgreSQL one array parameter, `name = ANY(:names)`: an IN
            # list of 2,000 placeholders is rewritten by psycopg on the
            # client each time and planned afresh by the server.
            matches = (
                KnownTest.name == any_(bindparam("names", list(part), type_=ARRAY(Text)))
                if postgres
                else KnownTest.name.in_(part)
            )
            self._ids.update(
                (name, test_id)
                for name, test_id in self.session.execute(
                    select(KnownTest.name, KnownTest.id).where(
                        KnownTest.repository_id == self.repository_id, matches
                    )
                )
            )

    def _resolve(self, results: Sequence[CaseResult], at: datetime) -> int:
        """Ids for every test of a report, creating the tests new to riskrank."""
        files: dict[str, str | None] = {}
        for result in results:
            if files.get(result.test) is None:
                files[result.test] = result.file
        unknown = [name for name in files if name not in self._ids]
        self._fetch_ids(unknown)
        new = [name for name in unknown if name not in self._ids]
        bulk_insert_ignoring(
            self.session,
            KnownTest,
            [
                {
                    "repository_id": self.repository_id,
                    "name": name,
                    "file": files[name],
                    "first_seen_at": at,
                    "last_seen_at": at,
                    "is_active": True,
                }
                for name in new
            ],
            conflict=["repository_id", "name"],
        )
        self._fetch_ids(new)
        self._created.update((self._ids[name], at) for name in new)
        for name, file in files.items():
            test_id = self._ids[name]
            seen = self._seen.get(test_id)
            if seen is None:
                self._seen[test_id] = _Seen(name, file, at, at)
            else:
                seen.first, seen.last = min(seen.first, at), max(seen.last, at)
        return len(new)

    def _load_tallies(self, test_ids: Sequence[int]) -> None:
        missing = [test_id for test_id in test_ids if test_id not in self._tallies]
        columns = [getattr(KnownTestStats, name) for name in STATS_COLUMNS]
        for part in chunks(missing):
            for row in self.session.execute(
                select(KnownTestStats.test_id, *columns).where(KnownTestStats.test_id.in_(part))
            ):
                values = row._asdict()
                test_id = values.pop("test_id")
                self._tallies[test_id] = tally.Tally(**values)

    def _lock_repository(self) -> int:
        """The repository's count of builds, its row locked (once) until the
        commit: ingestions of one repository run one after the other from
        their first report on, so each reads the links and statistics the
        one before wrote, and takes the build numbers after its. FOR NO KEY
        UPDATE: rows that only refer to the repository (events, commits,
        reports) are written meanwhile."""
        if self._build_count is None:
            self._build_count, self._last_build = self.session.execute(
                select(Repository.build_count, Repository.last_build)
                .where(Repository.id == self.repository_id)
                .with_for_update(key_share=True)
            ).one()
        return self._build_count

    def _build_number(self, build: str) -> int:
        """The repository's number of `build`: one more than the count of
        builds before it when it is new, else (another report of the newest
        build: shards, matrix jobs) the newest's, as a test's statistics
        merge reports of one build."""
        count = self._lock_repository()
        if build != self._last_build:
            count = self._build_count = count + 1
            self._last_build = build
            self._build_changed = True
        return count

    def _load_links(self, paths: Sequence[str]) -> None:
        """Every link of these paths (to any test), unless read already."""
        missing = [path for path in paths if path not in self._link_paths]
        for part in chunks(missing):
            for path, test_id, ran, failed, valued_at in self.session.execute(
                select(
                    FileTestLink.path,
                    FileTestLink.test_id,
                    FileTestLink.changed_together,
                    FileTestLink.failed_together,
                    FileTestLink.valued_at,
                ).where(
                    FileTestLink.repository_id == self.repository_id,
                    FileTestLink.path.in_(part),
                )
            ):
                self._links[(path, test_id)] = Link(ran, failed, valued_at)
        self._link_paths.update(missing)

    def _flaky(self, run: SuiteRun, build: str, results: Sequence[CaseResult]) -> set[int]:
        """Tests that failed and passed on this commit: within this report, or
        across it and another build of the commit (a retried CI job). Reports
        of one build (shards, matrix jobs) that disagree are configurations
        that differ, not flakiness."""
        outcomes: dict[int, set[bool]] = defaultdict(set)
        for result in results:
            if result.outcome is not Outcome.SKIPPED:
                outcomes[self._ids[result.test]].add(result.outcome is Outcome.PASSED)
        flaky = {test_id for test_id, passed in outcomes.items() if passed == {True, False}}

        earlier: dict[int, set[bool]] = defaultdict(set)
        for other_build, tests in self._pending_outcomes[run.commit_id].items():
            if other_build != build:
                for test_id, passed in tests.items():
                    earlier[test_id] |= passed
        other_builds = SuiteRun.id != run.id
        if run.run_key is not None:
            other_builds &= or_(SuiteRun.run_key.is_(None), SuiteRun.run_key != run.run_key)
        for test_id, outcome in self.session.execute(
            select(Execution.test_id, Execution.outcome)
            .join(SuiteRun, SuiteRun.id == Execution.run_id)
            .where(
                SuiteRun.commit_id == run.commit_id,
                other_builds,
                Execution.outcome != Outcome.SKIPPED,
            )
        ):
            earlier[test_id].add(outcome is Outcome.PASSED)
        for test_id, passed in outcomes.items():
            if earlier.get(test_id) and earlier[test_id] | passed == {True, False}:
                flaky.add(test_id)
                # The earlier report's executions were the other half of it.
                self._flaky_elsewhere.append((run.commit_id, run.run_key, test_id))
        for test_id, passed in outcomes.items():
            self._pending_outcomes[run.commit_id][build][test_id] |= passed
        return flaky

    # --- folding a report --------------------------------------------------------

    def ingest(
        self, run: SuiteRun, results: Sequence[CaseResult], *, at: datetime
    ) -> IngestSummary:
        """Fold one report (the results of `run`, which happened at `at`)."""
        self._lock_repository()
        new_tests = self._resolve(results, at)
        build = f"{run.commit_id}/{run.run_key or f'run-{run.id}'}"
        # A report without results is no build (the replay never sees it).
        number = self._build_number(build) if results else 0
        flaky = self._flaky(run, build, results)
        ids = self._ids
        self._executions.extend(
            {
                "run_id": run.id,
                "test_id": ids[result.test],
                "outcome": result.outcome,
                "duration": result.duration,
                "attempt": result.attempt,
                "flaky": ids[result.test] in flaky,
                "message": result.message,
            }
            for result in results
        )

        observed = {
            ids[name]: result
            for name, result in final_results(results).items()
            if result.outcome is not Outcome.SKIPPED
        }
        self._load_tallies(list(observed))
        paths = list(
            self.session.scalars(
                select(ChangedFile.path).where(ChangedFile.commit_id == run.commit_id)
            )
        )
        if paths and observed:
            self._load_links(paths)
        for test_id, result in observed.items():
            step = tally.advance(
                self._tallies.get(test_id) or tally.Tally(),
                tally.Observation(result.outcome, result.duration, test_id in flaky),
                build=build,
                at=at,
            )
            self._tallies[test_id] = step.state
            self._dirty.add(test_id)
            if paths and (step.new_build or step.status_change):
                for path in paths:
                    key = (path, test_id)
                    self._links[key] = self._links.get(key, EMPTY_LINK).add(
                        ran=step.new_build, failed=step.status_change, build=number
                    )
                    self._changed_links.add(key)
        return IngestSummary(
            tests=len(observed),
            executions=len(results),
            new_tests=new_tests,
            flaky=len(flaky),
        )

    # --- writing ------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything pending; the Ingestor can go on afterwards."""
        session = self.session
        now = utcnow()
        bulk_insert_ignoring(
            session, Execution, self._executions, conflict=["run_id", "test_id", "attempt"]
        )
        self._executions.clear()

        for commit_id, run_key, test_id in self._flaky_elsewhere:
            other_builds = SuiteRun.commit_id == commit_id
            if run_key is not None:
                other_builds &= or_(SuiteRun.run_key.is_(None), SuiteRun.run_key != run_key)
            session.execute(
                update(Execution)
                .where(
                    Execution.test_id == test_id,
                    Execution.run_id.in_(select(SuiteRun.id).where(other_builds)),
                    Execution.outcome != Outcome.SKIPPED,
                )
                .values(flaky=True)
            )
        self._flaky_elsewhere.clear()
        self._pending_outcomes.clear()

        table = table_of(KnownTest)
        insert_upserting(
            session,
            KnownTest,
            [
                {
                    "repository_id": self.repository_id,
                    "name": seen.name,
                    "file": seen.file,
                    "first_seen_at": seen.first,
                    "last_seen_at": seen.last,
                    "is_active": True,
                }
                for test_id, seen in self._seen.items()
                if self._created.get(test_id) != seen.last
            ],
            conflict=["repository_id", "name"],
            set_=lambda excluded: {
                "last_seen_at": case(
                    (excluded.last_seen_at > table.c.last_seen_at, excluded.last_seen_at),
                    else_=table.c.last_seen_at,
                ),
                "is_active": True,
            },
        )
        self._seen.clear()
        self._created.clear()

        upsert_adding(
            session,
            KnownTestStats,
            [
                {"test_id": test_id, "updated_at": now, **_columns(self._tallies[test_id])}
                for test_id in sorted(self._dirty)
            ],
            conflict=["test_id"],
            add=[],
            replace=[*STATS_COLUMNS, "updated_at"],
        )
        if self._build_changed:
            session.execute(
                update(Repository)
                .where(Repository.id == self.repository_id)
                .values(build_count=self._build_count, last_build=self._last_build)
            )
            self._build_changed = False
        if self._dirty:
            # Plans keep the statistics they were scored with, as of the
            # repository's version: a new one, with the tests it changed,
            # tells the plan API which to read again. The repository's row
            # stays locked to the commit, so versions commit in order.
            version = session.scalar(
                update(Repository)
                .where(Repository.id == self.repository_id)
                .values(stats_version=Repository.stats_version + 1)
                .returning(Repository.stats_version)
            )
            session.add(
                StatsChange(
                    repository_id=self.repository_id,
                    version=version,
                    test_ids=np.array(sorted(self._dirty), dtype="<i8").tobytes(),
                )
            )
            session.flush()
        self._dirty.clear()

        links = self._links
        upsert_adding(
            session,
            FileTestLink,
            [
                {
                    "repository_id": self.repository_id,
                    "path": path,
                    "test_id": test_id,
                    "changed_together": links[path, test_id].changed_together,
                    "failed_together": links[path, test_id].failed_together,
                    "valued_at": links[path, test_id].valued_at,
                    "updated_at": now,
                }
                for path, test_id in sorted(self._changed_links)
            ],
            conflict=["repository_id", "path", "test_id"],
            add=[],
            replace=["changed_together", "failed_together", "valued_at", "updated_at"],
        )
        # Read again after a flush: the memory held is one batch's links.
        links.clear()
        self._link_paths.clear()
        self._changed_links.clear()


def _columns(state: tally.Tally) -> dict[str, Any]:
    return {name: getattr(state, name) for name in STATS_COLUMNS}
