"""A training that crashes leaves the active model active: a real
`riskrank worker` is SIGKILLed in the middle of a training (while it holds
the repository's training lock), on SQLite and PostgreSQL. Nothing of the
candidate is stored, the active model stays, and the lock dies with the
worker: the next training runs."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from scheduler.config import Settings
from scheduler.db import Database
from scheduler.ingest.history import read_history
from scheduler.models import ModelStatus, Provider, RiskModel
from scheduler.queue import MODELS_TRAIN, create_celery, send_now
from scheduler.services import history, repos, training
from tests.e2e.conftest import RISKRANK, Process, clean_env
from tests.helpers import wait_for
from tests.planning.data import add_model

pytestmark = pytest.mark.slow


def training_in_progress(db_url: str, repository_id: int) -> bool:
    """Whether a training holds the repository: its row lock on PostgreSQL
    (scheduler.services.training._lock), the write lock on SQLite."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        connection = sqlite3.connect(str(url.database), timeout=0, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return True
        finally:
            connection.close()
        return False
    # Without taking the lock: trying it (FOR UPDATE SKIP LOCKED) would make
    # a training that asks in the same instant skip its turn, as if another
    # training held it. A row lock writes the locker's transaction id in the
    # row's xmax; that transaction holds the lock while its id is running.
    dsn = url.set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        row = connection.execute(
            "SELECT xmax::text FROM repositories WHERE id = %s", (repository_id,)
        ).fetchone()
        if row is None or row[0] == "0":
            return False
        running = connection.execute(
            "SELECT 1 FROM pg_locks WHERE locktype = 'transactionid' "
            "AND transactionid::text = %s AND granted",
            (row[0],),
        ).fetchone()
        return running is not None


def models(database: Database, repository_id: int) -> list[tuple[int, ModelStatus]]:
    with database.session() as session:
        return [
            (version, status)
            for version, status in session.execute(
                select(RiskModel.version, RiskModel.status)
                .where(RiskModel.repository_id == repository_id)
                .order_by(RiskModel.version)
            )
        ]


def test_a_worker_killed_mid_training_leaves_the_active_model_active(
    db_url: str, database: Database, redis_url: str, shared_dir: Path, tmp_path: Path
) -> None:
    path = shared_dir / "datasets" / "dune-common" / "dune-total" / "features-engineered.csv.gz"
    with database.session() as session:
        repository_id = repos.add_repository(
            session, provider=Provider.GENERIC, full_name="dune/total"
        ).id
    history.import_history(
        database,
        repository_id=repository_id,
        reports=list(itertools.islice(read_history(path), 120)),
    )
    add_model(database, repository_id)  # v1, active
    assert models(database, repository_id) == [(1, ModelStatus.ACTIVE)]

    env = clean_env(RISKRANK_DATABASE_URL=db_url, RISKRANK_BROKER_URL=redis_url)
    worker = Process(
        [RISKRANK, "worker", "--concurrency", "1"], env=env, cwd=tmp_path, log=tmp_path / "w.log"
    )
    try:
        celery = create_celery(Settings(database_url=db_url, broker_url=redis_url))
        assert send_now(celery, MODELS_TRAIN, repository_id)
        try:
            wait_for(
                lambda: training_in_progress(db_url, repository_id),
                timeout=60,
                interval=0.05,
                what="the training to start",
            )
        except AssertionError as error:
            raise AssertionError(f"{error}; the worker said:\n{worker.output()}") from None
        # The crash: the whole worker, its pool process (the one training) too.
        for pid in [worker.popen.pid, *pool_processes(worker.popen.pid)]:
            os.kill(pid, signal.SIGKILL)
        worker.popen.wait(timeout=10)
    finally:
        worker.stop()
    wait_for(
        lambda: not training_in_progress(db_url, repository_id),
        timeout=30,
        what="the dead worker's lock to be released",
    )
    assert models(database, repository_id) == [(1, ModelStatus.ACTIVE)], worker.output()

    # Nothing is stuck: the next training takes the lock and runs.
    with database.session() as session:
        outcome = training.train_repository(session, repository_id=repository_id)
    assert outcome is not None
    versions = models(database, repository_id)
    assert [version for version, _ in versions] == [1, 2]
    assert sum(status is ModelStatus.ACTIVE for _, status in versions) == 1


def pool_processes(pid: int) -> list[int]:
    """The worker's child processes (its task pool)."""
    children = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(proc.name))
    return children
