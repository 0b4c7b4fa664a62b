"""Engines and sessions. The boundary (a request, a task, a CLI command) opens
a session with `session_scope`, which commits or rolls back; nothing below it
commits."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_SECONDS = 30


def _configure_sqlite(engine: Engine) -> None:
    # api, worker and beat are separate processes sharing one file: WAL lets
    # readers run beside the writer, the busy timeout makes writers queue
    # instead of failing, and BEGIN IMMEDIATE takes the write lock up front so
    # a read-then-write transaction cannot fail half-way on a stale snapshot.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_db_engine(url: str) -> Engine:
    # hide_parameters: a statement's values never reach a log line or an
    # error's text (a token's hash, a webhook secret being set); the SQL
    # itself still says what failed.
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}, hide_parameters=True
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


@dataclass(frozen=True)
class Database:
    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def from_url(cls, url: str) -> Database:
        engine = create_db_engine(url)
        return cls(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any error."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


_databases: dict[str, Database] = {}


def database_for(url: str) -> Database:
    """The process-wide Database for a URL (one engine and pool per process)."""
    database = _databases.get(url)
    if database is None:
        database = _databases[url] = Database.from_url(url)
    return database


def dispose_all() -> None:
    """Forget every engine of this process (after a fork)."""
    for database in _databases.values():
        database.engine.dispose(close=False)
    _databases.clear()


def shown_url(url: str) -> str:
    """A database or broker URL for messages: as given, its password (if
    any) hidden; one SQLAlchemy cannot parse shows its scheme only."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return url.split("://", 1)[0] + "://…"
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)
