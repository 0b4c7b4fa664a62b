"""Engines and sessions. The boundary (a request, a task, a CLI command) opens
a session with `session_scope`, which commits or rolls back; nothing below it
commits."""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Timeouts:
    """How long a process waits on its database before giving up, and how
    it keeps its connections.

    The defaults suit the workers and the CLI, whose work is long by nature
    (a first ingestion, a training) and on which nobody waits synchronously:
    a connect timeout (a server that accepts and never answers would
    otherwise hold a connection attempt for minutes), and no statement
    timeout. The API takes short ones from the settings
    (`Settings.api_database_timeouts`): a CI job or a webhook sender waits on
    every request."""

    # PostgreSQL: libpq's connect_timeout (it counts whole seconds, at least 2).
    connect_seconds: float = 10.0
    # PostgreSQL: the server's statement_timeout; None leaves the server's own.
    statement_seconds: float | None = None
    # Waiting for a connection of the pool (every backend).
    pool_seconds: float = 30.0
    # SQLite: the busy timeout (how long a writer queues behind another).
    busy_seconds: float = SQLITE_BUSY_TIMEOUT_SECONDS
    # A circuit breaker (PostgreSQL), 0: off. After a failed connection
    # attempt, further attempts fail at once while a background thread tries
    # the server every this many seconds: a dead or silent server then costs
    # one connect timeout, not one per waiting request (which would fill the
    # API's thread pool and answer past any deadline).
    down_seconds: float = 0.0
    # PostgreSQL: connections kept open in the pool (SQLAlchemy's default
    # is 5). A request past them opens one more and closes it on return:
    # on a busy API that is a new server process per request, most of the
    # time of a webhook (the API bounds its webhooks' sessions to this).
    pool_size: int = 5
    # PostgreSQL: a pooled connection idle this long is pinged (SELECT 1)
    # before use, and replaced if the server dropped it (a restart); one in
    # steady use is not, which saves a round trip per request. A connection
    # that breaks while in use still fails its request (503) and makes the
    # pool drop every connection older than it.
    ping_idle_seconds: float = 1.0


class DatabaseUnavailable(psycopg.OperationalError):
    """Raised instead of connecting while the circuit breaker is open (see
    `Timeouts.down_seconds`); SQLAlchemy wraps it in its OperationalError
    like any failed connection."""


class _Breaker:
    """A circuit breaker on connecting. After a failed attempt, every
    attempt fails at once, and a thread of its own tries the server every
    `hold_seconds` until it answers: a request never pays a connect timeout
    of a server known to be down, however long it already waited."""

    def __init__(self, hold_seconds: float) -> None:
        self.hold_seconds = hold_seconds
        self._down = False
        self._closed = False
        self._prober: threading.Thread | None = None
        self._lock = threading.Lock()

    def enter(self) -> None:
        if self._down:
            raise DatabaseUnavailable(
                "the database did not answer a recent connection attempt; not trying again yet"
            )

    def failed(self, reconnect: Callable[[], Any]) -> None:
        with self._lock:
            self._down = True
            if self._prober is None and not self._closed:
                self._prober = threading.Thread(
                    target=self._probe, args=(reconnect,), name="riskrank-db-probe", daemon=True
                )
                self._prober.start()

    def _probe(self, reconnect: Callable[[], Any]) -> None:
        while not self._closed:
            time.sleep(self.hold_seconds)
            try:
                connection = reconnect()
            except Exception as error:
                log.debug("the database is still unavailable: %s", error)
                continue
            connection.close()
            log.info("the database answers again")
            break
        with self._lock:
            self._down = False
            self._prober = None

    def close(self) -> None:
        self._closed = True


_breakers: weakref.WeakKeyDictionary[Engine, _Breaker] = weakref.WeakKeyDictionary()


def _install_breaker(engine: Engine, hold_seconds: float) -> None:
    breaker = _breakers[engine] = _Breaker(hold_seconds)

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        breaker.enter()
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception:
            breaker.failed(lambda: dialect.connect(*cargs, **cparams))
            raise


def _install_idle_ping(engine: Engine, idle_seconds: float) -> None:
    """pool_pre_ping for connections idle `idle_seconds` or more only."""

    @event.listens_for(engine, "connect")
    def _opened(_dbapi_connection: Any, record: Any) -> None:
        record.info["riskrank_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["riskrank_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _taken(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("riskrank_idle_since", 0.0)
        if time.monotonic() - idle_since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool discards this connection and checks out another.
            raise exc.DisconnectionError(f"a pooled connection is gone: {error}") from error


def _postgres_connect_args(url: str, timeouts: Timeouts) -> dict[str, Any]:
    query = make_url(url).query
    args: dict[str, Any] = {}
    if "connect_timeout" not in query:  # the URL's own wins
        args["connect_timeout"] = max(2, math.ceil(timeouts.connect_seconds))
    if timeouts.statement_seconds is not None:
        milliseconds = max(1, round(timeouts.statement_seconds * 1000))
        given = query.get("options", "")
        options = given if isinstance(given, str) else " ".join(given)
        args["options"] = f"{options} -c statement_timeout={milliseconds}".strip()
    return args


def _configure_sqlite(engine: Engine, busy_seconds: float) -> None:
    # api, worker and beat are separate processes sharing one file: WAL lets
    # readers run beside the writer, the busy timeout makes writers queue
    # instead of failing, and BEGIN IMMEDIATE takes the write lock up front so
    # a read-then-write transaction cannot fail half-way on a stale snapshot.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={round(busy_seconds * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_db_engine(url: str, timeouts: Timeouts | None = None) -> Engine:
    # hide_parameters: a statement's values never reach a log line or an
    # error's text (a token's hash, a webhook secret being set); the SQL
    # itself still says what failed.
    timeouts = timeouts or Timeouts()
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"timeout": timeouts.busy_seconds},
            pool_timeout=timeouts.pool_seconds,
            hide_parameters=True,
        )
        _configure_sqlite(engine, timeouts.busy_seconds)
        return engine
    engine = create_engine(
        url,
        pool_size=timeouts.pool_size,
        pool_timeout=timeouts.pool_seconds,
        connect_args=_postgres_connect_args(url, timeouts),
        hide_parameters=True,
    )
    _install_idle_ping(engine, timeouts.ping_idle_seconds)
    if timeouts.down_seconds > 0:
        _install_breaker(engine, timeouts.down_seconds)
    return engine


@dataclass(frozen=True)
class Database:
    engine: Engine
    sessions: sessionmaker[Session]
    # PostgreSQL: sessions whose every statement commits by itself (see
    # `statement_session`); None elsewhere.
    autocommit_sessions: sessionmaker[Session] | None = None

    @classmethod
    def from_url(cls, url: str, timeouts: Timeouts | None = None) -> Database:
        engine = create_db_engine(url, timeouts)
        autocommit = None
        if engine.dialect.name == "postgresql":
            autocommit = sessionmaker(
                engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
            )
        return cls(
            engine=engine,
            sessions=sessionmaker(engine, expire_on_commit=False),
            autocommit_sessions=autocommit,
        )

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

    @contextmanager
    def statement_session(self) -> Iterator[Session]:
        """A unit of work that writes with ONE statement (a webhook's
        INSERT … ON CONFLICT DO NOTHING): on PostgreSQL every statement
        commits by itself, so the write is one round trip instead of three
        (BEGIN, the INSERT, COMMIT); elsewhere it is `session()`. Its commit
        hooks (`enqueue_after_commit`) run as `session()`'s do, and an error
        drops them, but a write already made stays: work of two writes that
        must hold together uses `session()`."""
        if self.autocommit_sessions is None:
            with self.session() as session:
                yield session
            return
        session = self.autocommit_sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        breaker = _breakers.get(self.engine)
        if breaker is not None:
            breaker.close()
        self.engine.dispose()


_databases: dict[tuple[str, Timeouts | None], Database] = {}


def database_for(url: str, timeouts: Timeouts | None = None) -> Database:
    """The process-wide Database for a URL (one engine and pool per process)."""
    key = (url, timeouts)
    database = _databases.get(key)
    if database is None:
        database = _databases[key] = Database.from_url(url, timeouts)
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
