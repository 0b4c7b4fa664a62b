"""Commits and the files each one changed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scheduler import limits
from scheduler.models.base import Base, BigIntId, str_enum, utcnow
from scheduler.models.enums import FileStatus


class Commit(Base):
    __tablename__ = "commits"
    __table_args__ = (UniqueConstraint("repository_id", "sha"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    # 40 hex digits for SHA-1 repositories, 64 for SHA-256 ones.
    sha: Mapped[str] = mapped_column(String(limits.SHA_CHARS))
    # The first parent as the push told it; NULL for a root commit or when unknown.
    parent_sha: Mapped[str | None] = mapped_column(String(limits.SHA_CHARS))
    # The branch of the push that first brought the commit.
    branch: Mapped[str | None] = mapped_column(String(limits.NAME_CHARS))
    author_name: Mapped[str | None] = mapped_column(String(limits.NAME_CHARS))
    author_time: Mapped[datetime | None]
    message: Mapped[str | None] = mapped_column(Text)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("ci_events.id", ondelete="SET NULL"))
    # Why its changed files may be incomplete: riskrank gave up asking the
    # provider for them and kept what the event's payload said (fail open;
    # scheduler.services.changes.unknown_note). Its plans' answers say it.
    changes_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    changed_files: Mapped[list[ChangedFile]] = relationship(
        back_populates="commit", lazy="raise", cascade="all, delete-orphan"
    )


class ChangedFile(Base):
    __tablename__ = "changed_files"
    __table_args__ = (UniqueConstraint("commit_id", "path"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    commit_id: Mapped[int] = mapped_column(ForeignKey("commits.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[FileStatus] = mapped_column(str_enum(FileStatus, "file_status"))
    old_path: Mapped[str | None] = mapped_column(Text)
    # Unknown when the provider's payload does not say (GitHub pushes do not).
    additions: Mapped[int | None]
    deletions: Mapped[int | None]
    # The file's hunks of `git diff -U0` as history JSONL writes them
    # ([{"old_start", "old_lines", "new_start", "new_lines", "symbol"}]), at
    # most scheduler.ingest.hunks.MAX_HUNKS of them with symbols of at most
    # MAX_SYMBOL characters; NULL (SQL NULL, not JSON null) when the source
    # did not say.
    hunks: Mapped[list[dict[str, Any]] | None] = mapped_column(
        JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
    )

    commit: Mapped[Commit] = relationship(back_populates="changed_files", lazy="raise")
