"""Enqueue-after-commit on a real Redis broker."""

import contextlib
import json
import logging
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from scheduler.config import Settings
from scheduler.db import Database
from scheduler.queue import (
    EVENTS_PROCESS,
    QUEUE_NAME,
    STATUSES_POST,
    create_celery,
    enqueue_after_commit,
    send_now,
)
from tests.helpers import queued_tasks


def test_task_is_sent_only_when_the_transaction_commits(
    settings: Settings, database: Database, redis_server: redis.Redis
) -> None:
    celery = create_celery(settings)
    with database.session() as session:
        enqueue_after_commit(session, celery, EVENTS_PROCESS, 41)
        session.flush()
        assert queued_tasks(redis_server) == []
    assert queued_tasks(redis_server) == [(EVENTS_PROCESS, [41])]


def test_rollback_drops_the_pending_task(
    settings: Settings, database: Database, redis_server: redis.Redis
) -> None:
    celery = create_celery(settings)

    def failing_request() -> None:
        with database.session() as session:
            enqueue_after_commit(session, celery, EVENTS_PROCESS, 42)
            raise RuntimeError("the request failed")

    with pytest.raises(RuntimeError):
        failing_request()
    # The next unit of work on a new session sends nothing stale.
    with database.session():
        pass
    assert queued_tasks(redis_server) == []


def test_rolled_back_savepoint_keeps_the_outer_task(
    settings: Settings, database: Database, redis_server: redis.Redis
) -> None:
    celery = create_celery(settings)
    with database.session() as session:
        enqueue_after_commit(session, celery, EVENTS_PROCESS, 43)
        savepoint = session.begin_nested()
        savepoint.rollback()
    assert queued_tasks(redis_server) == [(EVENTS_PROCESS, [43])]


def test_send_with_the_broker_down_returns_false_quickly(db_url: str) -> None:
    celery = create_celery(
        Settings(
            database_url=db_url, broker_url="redis://127.0.0.1:1/0", publish_timeout_seconds=0.5
        )
    )
    started = time.monotonic()
    assert send_now(celery, EVENTS_PROCESS, 1) is False
    # Bounded, so a webhook request never hangs on the broker.
    assert time.monotonic() - started < 5


def test_the_log_says_whether_a_task_the_broker_refused_is_swept_again(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    celery = create_celery(
        Settings(
            database_url=db_url, broker_url="redis://127.0.0.1:1/0", publish_timeout_seconds=0.5
        )
    )
    with caplog.at_level(logging.WARNING, logger="scheduler.queue"):
        assert send_now(celery, EVENTS_PROCESS, 1) is False
        assert send_now(celery, STATUSES_POST, 2, swept=False) is False
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0].startswith(
        f"could not queue {EVENTS_PROCESS}(1,), it stays for the sweeper: "
    )
    assert messages[1].startswith(
        f"could not queue {STATUSES_POST}(2,), dropped: nothing queues it again: "
    )


class _Proxy:
    """A TCP relay to Redis whose open connections can be cut, as a broker
    restart or a network drop would."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            self.sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for end in (source, target):
            end.close()

    def cut(self) -> None:
        for end in self.sockets:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
        self.sockets = []

    def close(self) -> None:
        self.cut()
        self.server.close()


def test_a_kept_connection_that_dropped_is_replaced(
    tmp_path: Path, redis_url: str, redis_server: redis.Redis
) -> None:
    broker = urlsplit(redis_url)
    assert broker.port is not None
    proxy = _Proxy(broker.port)
    try:
        celery = create_celery(
            Settings(
                database_url=f"sqlite:///{tmp_path / 'riskrank.db'}",
                broker_url=f"redis://127.0.0.1:{proxy.port}{broker.path}",
                publish_timeout_seconds=2,
            )
        )
        assert send_now(celery, EVENTS_PROCESS, 1)
        proxy.cut()
        # The producer kept from the first send finds its connection gone.
        assert send_now(celery, EVENTS_PROCESS, 2)
        assert send_now(celery, EVENTS_PROCESS, 3)
    finally:
        proxy.close()
    assert sorted(queued_tasks(redis_server)) == [
        (EVENTS_PROCESS, [1]),
        (EVENTS_PROCESS, [2]),
        (EVENTS_PROCESS, [3]),
    ]


def test_a_sent_task_carries_the_headers_celery_would_give_it(
    settings: Settings, redis_server: redis.Redis
) -> None:
    """send_now builds its message itself (scheduler.queue._Publisher): the
    headers a worker or `celery inspect` shows are those of send_task."""
    celery = create_celery(settings)
    assert send_now(celery, EVENTS_PROCESS, 12345678901)
    celery.send_task(EVENTS_PROCESS, args=(12345678901,))
    # LPUSH: the newest first.
    celerys, ours = (json.loads(raw)["headers"] for raw in redis_server.lrange(QUEUE_NAME, 0, -1))
    for name in ("task", "argsrepr", "kwargsrepr", "origin", "retries"):
        assert ours[name] == celerys[name], name
    assert ours["argsrepr"] == "(12345678901,)"
