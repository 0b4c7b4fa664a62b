"""Tests, the runs that reported them, each execution, and the running
aggregates that the features read in O(1)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from scheduler import limits
from scheduler.models.base import Base, BigIntId, QueuedWork, str_enum, utcnow
from scheduler.models.enums import Outcome, RunSource, RunStatus


class KnownTest(Base):
    __tablename__ = "known_tests"
    __table_args__ = (UniqueConstraint("repository_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    # The canonical test id (one function makes it, for plans and results
    # alike), at most limits.TEST_ID_BYTES: the unique index holds it.
    name: Mapped[str] = mapped_column(Text)
    file: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    is_active: Mapped[bool] = mapped_column(default=True)


class SuiteRun(QueuedWork, Base):
    """One report of outcomes (a CI job, a shard, an imported build)."""

    __tablename__ = "test_runs"
    __table_args__ = (
        # The same report sent twice for a commit is stored once.
        UniqueConstraint("repository_id", "commit_id", "report_sha256"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), index=True
    )
    commit_id: Mapped[int] = mapped_column(ForeignKey("commits.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id", ondelete="SET NULL"))
    source: Mapped[RunSource] = mapped_column(str_enum(RunSource, "run_source"))
    # Reports that share a key (shards, matrix jobs) count as one build.
    run_key: Mapped[str | None] = mapped_column(String(limits.NAME_CHARS))
    status: Mapped[RunStatus] = mapped_column(
        str_enum(RunStatus, "run_status"), default=RunStatus.PENDING
    )
    content_type: Mapped[str | None] = mapped_column(String(limits.NAME_CHARS))
    # The report exactly as it arrived (decompressed); NULL for imported history.
    report: Mapped[bytes | None] = mapped_column(LargeBinary)
    report_sha256: Mapped[str | None] = mapped_column(String(64))
    ingested_at: Mapped[datetime | None]
    # How many of the report's distinct tests (in report order) are folded
    # in already: a large report is ingested in steps, each its own
    # transaction, and a redelivered task goes on from here.
    ingested_tests: Mapped[int] = mapped_column(default=0, server_default="0")
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Execution(Base):
    __tablename__ = "executions"
    __table_args__ = (UniqueConstraint("run_id", "test_id", "attempt"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("test_runs.id", ondelete="CASCADE"))
    test_id: Mapped[int] = mapped_column(
        ForeignKey("known_tests.id", ondelete="CASCADE"), index=True
    )
    outcome: Mapped[Outcome] = mapped_column(str_enum(Outcome, "outcome"))
    duration: Mapped[float | None] = mapped_column(Float)
    attempt: Mapped[int] = mapped_column(default=1)
    # Failed and passed on the same commit.
    flaky: Mapped[bool] = mapped_column(default=False)
    message: Mapped[str | None] = mapped_column(Text)


class KnownTestStats(Base):
    """Running aggregates per test, updated as outcomes arrive."""

    __tablename__ = "test_stats"

    test_id: Mapped[int] = mapped_column(
        ForeignKey("known_tests.id", ondelete="CASCADE"), primary_key=True
    )
    # Builds the test ran in (passed, failed or errored; a skip says nothing).
    runs: Mapped[int] = mapped_column(default=0)
    # Builds whose final outcome for the test was a failure or an error.
    failures: Mapped[int] = mapped_column(default=0)
    last_outcome: Mapped[Outcome | None] = mapped_column(str_enum(Outcome, "outcome"))
    # Builds since the last failing one; NULL if it never failed.
    builds_since_failure: Mapped[int | None]
    # The newest build outcomes, newest first, one letter each: P, F or E.
    recent: Mapped[str] = mapped_column(String(64), default="")
    # Changes between passing and failing from one build to the next.
    flips: Mapped[int] = mapped_column(default=0)
    # Builds in which the test failed and then passed on the same commit.
    flaky_runs: Mapped[int] = mapped_column(default=0)
    duration_mean: Mapped[float | None] = mapped_column(Float)
    duration_count: Mapped[int] = mapped_column(default=0)
    # The build last counted ("<commit id>/<run key>"): more reports of the
    # same build (shards, matrix jobs) merge into it instead of adding a run.
    last_build: Mapped[str | None] = mapped_column(String(320))
    last_run_at: Mapped[datetime | None]
    last_failure_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class FileTestLink(Base):
    """In how many builds a path changed and a test ran, and in how many of
    those the test started failing (a status change), older builds weighing
    less (scheduler.risk.links): the counts are valued at the repository's
    build `valued_at` and decay, when read, by the builds since."""

    __tablename__ = "file_test_links"
    __table_args__ = (UniqueConstraint("repository_id", "path", "test_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    test_id: Mapped[int] = mapped_column(
        ForeignKey("known_tests.id", ondelete="CASCADE"), index=True
    )
    changed_together: Mapped[float] = mapped_column(Float, default=0.0)
    failed_together: Mapped[float] = mapped_column(Float, default=0.0)
    # Repository.build_count when the counts were last changed.
    valued_at: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class StatsChange(Base):
    """Which tests' statistics one write changed, under the repository's
    statistics version it moved to (Repository.stats_version): a plan
    scored at an older version reads again only these tests' statistics.
    Pruned with the plans (scheduler.services.retention)."""

    __tablename__ = "stats_changes"
    __table_args__ = (UniqueConstraint("repository_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(BigInteger)
    # The test ids, little-endian int64 (a flush may change ten thousand).
    test_ids: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
