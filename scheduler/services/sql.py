"""Statements that differ by backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session


def insert_ignoring_conflicts(
    session: Session,
    model: type[DeclarativeBase],
    rows: Sequence[dict[str, Any]],
    *,
    conflict_columns: Sequence[str],
) -> Insert:
    """INSERT … ON CONFLICT (columns) DO NOTHING, for PostgreSQL and SQLite.

    The row that is already there wins; this is how concurrent workers and
    redelivered events stay idempotent without a read-then-write race."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return (
            postgresql.insert(model)
            .values(list(rows))
            .on_conflict_do_nothing(index_elements=list(conflict_columns))
        )
    if dialect == "sqlite":
        return (
            sqlite.insert(model)
            .values(list(rows))
            .on_conflict_do_nothing(index_elements=list(conflict_columns))
        )
    raise NotImplementedError(f"riskrank supports PostgreSQL and SQLite, not {dialect}")
