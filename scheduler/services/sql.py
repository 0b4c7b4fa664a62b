"""Statements that differ by backend: INSERT … ON CONFLICT, for PostgreSQL
and SQLite. The row that is already there wins (or is added to), which is how
concurrent workers and redelivered messages stay idempotent without a
read-then-write race.

Rows go in as executemany parameters of one cached statement, which
SQLAlchemy sends as multi-row VALUES pages ("insertmanyvalues"). It does so
for an ON CONFLICT statement only when it has a RETURNING clause, hence the
RETURNING of the primary key below: without it psycopg 3 sends one statement
per row, and ingestion on PostgreSQL waits on a round trip per test.

The bulk writes of ingestion (`bulk_insert_ignoring`, `insert_upserting`,
`upsert_adding`) go further on PostgreSQL: one statement per chunk that
reads its rows from `unnest()` of one array per column. A VALUES page of
2,000 rows is a statement of 14,000 placeholders that psycopg rewrites on
the client every time (the largest cost of a 100,000-test report: 90 of
177 s); arrays are seven parameters, whatever the chunk."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Column, Insert, Table, bindparam, func, select, text
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session

CHUNK = 2000  # rows per executemany: far below SQLite's bound-parameter limit
BULK_CHUNK = 10_000  # rows per unnest() statement (PostgreSQL): seven arrays, any length

T = TypeVar("T")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """`items` in slices of `size` (statements with bounded parameters)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def table_of(model: type[DeclarativeBase]) -> Table:
    return cast(Table, model.__table__)


def _insert(session: Session, model: type[DeclarativeBase]) -> Any:
    dialect = session.get_bind().dialect.name
    table = table_of(model)
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"riskrank supports PostgreSQL and SQLite, not {dialect}")


def _batched(statement: Insert, model: type[DeclarativeBase]) -> Insert:
    return statement.returning(*table_of(model).primary_key.columns)


def insert_ignoring(
    session: Session, model: type[DeclarativeBase], *, conflict: Sequence[str]
) -> Insert:
    """INSERT … ON CONFLICT (conflict) DO NOTHING, without values."""
    statement: Insert = _insert(session, model).on_conflict_do_nothing(
        index_elements=list(conflict)
    )
    return statement


def insert_rows_ignoring(
    session: Session,
    model: type[DeclarativeBase],
    rows: Sequence[dict[str, Any]],
    *,
    conflict: Sequence[str],
) -> None:
    statement = _batched(insert_ignoring(session, model, conflict=conflict), model)
    for part in chunks(rows):
        session.execute(statement, list(part))


def bulk_insert_ignoring(
    session: Session,
    model: type[DeclarativeBase],
    rows: Sequence[dict[str, Any]],
    *,
    conflict: Sequence[str],
) -> None:
    """insert_rows_ignoring for large row sets (unnest() on PostgreSQL).
    Every row has the same keys, and names every column without a
    server-side default."""
    _write_bulk(
        session,
        model,
        rows,
        lambda statement: statement.on_conflict_do_nothing(index_elements=list(conflict)),
    )


def _write_bulk(
    session: Session,
    model: type[DeclarativeBase],
    rows: Sequence[dict[str, Any]],
    finish: Callable[[Any], Insert],
) -> None:
    """Write `rows` chunk by chunk through `finish(insert)` (which adds the
    ON CONFLICT clause; it may use the statement's `excluded`)."""
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        statement = _batched(finish(_insert(session, model)), model)
        for part in chunks(rows):
            session.execute(statement, list(part))
        return
    table = table_of(model)
    names = list(rows[0])
    arrays = [
        sql_cast(
            bindparam(f"bulk_{name}", type_=postgresql.ARRAY(table.c[name].type)),
            postgresql.ARRAY(table.c[name].type),
        )
        for name in names
    ]
    source = func.unnest(*arrays).table_valued(*names).render_derived()
    bulk = finish(
        postgresql.insert(table).from_select(names, select(*(source.c[name] for name in names)))
    )
    for part in chunks(rows, BULK_CHUNK):
        session.execute(bulk, {f"bulk_{name}": [row[name] for row in part] for name in names})


@functools.cache
def _one_ignoring(
    dialect: str, model: type[DeclarativeBase], conflict: tuple[str, ...], returning: Any
) -> Insert:
    """The statement of `insert_one_ignoring`, built once: its row goes in as
    parameters, so SQLAlchemy finds it compiled in its cache instead of
    building and keying a new statement for every row (a webhook's INSERT
    spent more time there than at the database)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement: Insert = (
        insert(table_of(model))
        .on_conflict_do_nothing(index_elements=list(conflict))
        .returning(returning)
    )
    return statement


def insert_one_ignoring(
    session: Session,
    model: type[DeclarativeBase],
    row: dict[str, Any],
    *,
    conflict: Sequence[str],
    returning: Column[Any] | Any,
) -> Any:
    """Insert one row; its `returning` value, or None if a row was there."""
    dialect = session.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"riskrank supports PostgreSQL and SQLite, not {dialect}")
    statement = _one_ignoring(dialect, model, tuple(conflict), returning)
    return session.scalar(statement, row)


def insert_upserting(
    session: Session,
    model: type[DeclarativeBase],
    rows: Sequence[dict[str, Any]],
    *,
    conflict: Sequence[str],
    set_: Callable[[Any], dict[str, Any]],
) -> None:
    """INSERT … ON CONFLICT (conflict) DO UPDATE SET set_(excluded), for
    rows that all have the same keys (see bulk_insert_ignoring)."""
    _write_bulk(
        session,
        model,
        rows,
        lambda statement: statement.on_conflict_do_update(
            index_elements=list(conflict), set_=set_(statement.excluded)
        ),
    )


def upsert_adding(
    session: Session,
    model: type[DeclarativeBase],
    rows: Sequence[dict[str, Any]],
    *,
    conflict: Sequence[str],
    add: Sequence[str],
    replace: Sequence[str] = (),
) -> None:
    """Insert rows; where one exists, add the `add` columns to it and
    overwrite the `replace` columns."""
    table = table_of(model)
    insert_upserting(
        session,
        model,
        rows,
        conflict=conflict,
        set_=lambda excluded: {
            **{name: table.c[name] + excluded[name] for name in add},
            **{name: excluded[name] for name in replace},
        },
    )


def analyze_if_unplanned(
    session: Session,
    model: type[DeclarativeBase],
    *,
    rows_added: int,
    also: Sequence[type[DeclarativeBase]] = (),
) -> None:
    """ANALYZE `model`'s table (and those of `also`, filled alongside) on
    PostgreSQL when the planner still believes it smaller than the rows just
    added: on a table never analysed, the plans of the lookups by name
    (prepared by psycopg after five runs, and kept) took seconds per 2,000
    names, and a first report of 100,000 tests minutes. ANALYZE blocks no
    reads or writes."""
    if session.get_bind().dialect.name != "postgresql":
        return
    name = table_of(model).name
    estimate = session.scalar(
        text("SELECT reltuples FROM pg_class WHERE oid = CAST(:name AS regclass)"), {"name": name}
    )
    if estimate is None or estimate >= rows_added:
        return
    for table in (name, *(table_of(other).name for other in also)):
        session.execute(text(f'ANALYZE "{table}"'))
