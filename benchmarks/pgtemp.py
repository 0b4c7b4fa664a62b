"""A throwaway PostgreSQL database for a benchmark, migrated and dropped at
the end whatever happens, and a bulk fill for it (shared by the benchmarks
that measure PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from sqlalchemy.engine import make_url

from scheduler import migrate


@dataclass(frozen=True)
class TemporaryDatabase:
    url: str  # for SQLAlchemy (riskrank's own code)
    dsn: str  # for psycopg directly (bulk fills)


@contextmanager
def temporary_database(server_url: str) -> Iterator[TemporaryDatabase]:
    """A new database on the server of `server_url`, migrated to the head."""
    server = make_url(server_url)
    name = f"riskrank_bench_{uuid.uuid4().hex[:8]}"
    admin_dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = server.set(database=name).render_as_string(hide_password=False)
            dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
            migrate.upgrade(url)
            yield TemporaryDatabase(url, dsn)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def copy_rows(dsn: str, table: str, columns: list[str], rows: list[tuple[object, ...]]) -> None:
    """Rows into a table through COPY (filling a million rows by INSERT would
    take longer than what the benchmark measures)."""
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with (
        psycopg.connect(dsn) as connection,
        connection.cursor() as cursor,
        cursor.copy(statement) as copy,
    ):
        for row in rows:
            copy.write_row(row)
