"""The PostgreSQL pool of scheduler.db: a connection the server dropped
while it sat idle in the pool is replaced before use (the ping after
`ping_idle_seconds`), one in steady use is not pinged, and a statement
session writes without a transaction of its own."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import exc, text
from sqlalchemy.engine import make_url

from scheduler.db import Database, Timeouts


def _backend_pid(database: Database) -> int:
    with database.engine.connect() as connection:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    assert isinstance(pid, int)
    return pid


def _terminate(postgres_url: str, pid: int) -> None:
    dsn = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_connection_dropped_while_idle_is_replaced_before_use(postgres_url: str) -> None:
    database = Database.from_url(postgres_url, Timeouts(ping_idle_seconds=0.1, pool_size=1))
    try:
        first = _backend_pid(database)
        _terminate(postgres_url, first)
        time.sleep(0.2)
        # The ping finds it gone: the request gets a new connection, no error.
        second = _backend_pid(database)
        assert second != first
    finally:
        database.dispose()


def test_a_connection_in_steady_use_is_not_pinged(postgres_url: str) -> None:
    """The price of the saved round trip: a connection used again within
    `ping_idle_seconds` is not checked, so one the server dropped meanwhile
    fails its request (503 in the API); the pool then replaces it."""
    database = Database.from_url(postgres_url, Timeouts(ping_idle_seconds=60, pool_size=1))
    try:
        first = _backend_pid(database)
        _terminate(postgres_url, first)
        with pytest.raises(exc.OperationalError):
            _backend_pid(database)
        assert _backend_pid(database) != first
    finally:
        database.dispose()


def test_a_statement_session_commits_each_statement_by_itself(postgres_url: str) -> None:
    database = Database.from_url(postgres_url)
    try:
        with database.statement_session() as session:
            connection = session.connection().connection.dbapi_connection
            assert connection is not None
            session.execute(text("SELECT 1"))
            # No transaction left open by the statement: nothing to COMMIT.
            assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with database.session() as session:
            session.execute(text("SELECT 1"))
            connection = session.connection().connection.dbapi_connection
            assert connection is not None
            assert connection.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    finally:
        database.dispose()
