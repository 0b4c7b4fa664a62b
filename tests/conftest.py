"""Fixtures on real services: PostgreSQL, SQLite and Redis, built by the
migrations. Each test starts from empty tables.

PostgreSQL and Redis are found at RISKRANK_TEST_POSTGRES_URL and
RISKRANK_TEST_REDIS_URL (defaults: the local servers). Where one is not
running, the tests that need it are skipped with the reason, except under CI
(CI=true), where a missing service is an error: CI must test everything."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from scheduler import migrate
from scheduler.config import Settings
from scheduler.db import Database
from scheduler.models import Base, FileTestLink, KnownTest
from tests.fake_provider import FakeProvider, serve

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RISKRANK_SHARED_DIR", ROOT.parent / "shared"))
POSTGRES_URL = os.environ.get(
    "RISKRANK_TEST_POSTGRES_URL", "postgresql+psycopg://127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("RISKRANK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# Under pytest-xdist each worker process takes a Redis database of its own
# (15, 14, …): the tests empty and read theirs. PostgreSQL databases and SQLite
# files are per process already (session fixtures).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")


def _worker_redis_url() -> str:
    """RISKRANK_TEST_REDIS_URL (which ends in /<database>) for this worker."""
    base, _, number = REDIS_URL.rpartition("/")
    database = int(number) - int(_WORKER.removeprefix("gw") or 0)
    if database < 0:
        raise RuntimeError(f"too many xdist workers for the Redis databases below {number}")
    return f"{base}/{database}"


def unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail under CI."""
    if IN_CI:
        pytest.fail(f"{reason} (CI must have it)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "samples").is_dir():
        unavailable(
            f"the shared samples and datasets are not at {SHARED} (set RISKRANK_SHARED_DIR)"
        )
    return SHARED


@pytest.fixture(scope="session")
def github_samples(shared_dir: Path) -> Path:
    return shared_dir / "samples" / "dev" / "github"


# --- databases --------------------------------------------------------------


def _psycopg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of its own on the PostgreSQL server, migrated, dropped at the end."""
    try:
        admin = psycopg.connect(_psycopg_dsn(POSTGRES_URL), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        unavailable(f"PostgreSQL is not reachable at {POSTGRES_URL}: {error}")
    name = f"riskrank_test_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        migrate.upgrade(url)
        yield url
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'riskrank.db'}"
    migrate.upgrade(url)
    return url


def empty_all_tables(database: Database) -> None:
    with database.session() as session:
        if session.get_bind().dialect.name == "postgresql":
            tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
            session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                session.execute(delete(table))


def stored_links(
    session: Session, repository_id: int | None = None
) -> dict[tuple[str, str], tuple[float, float, int]]:
    """The file-test links as stored, by (path, test name): (changed
    together, failed together, the build they are valued at)."""
    query = select(
        FileTestLink.path,
        KnownTest.name,
        FileTestLink.changed_together,
        FileTestLink.failed_together,
        FileTestLink.valued_at,
    ).join(KnownTest, KnownTest.id == FileTestLink.test_id)
    if repository_id is not None:
        query = query.where(FileTestLink.repository_id == repository_id)
    return {
        (path, name): (ran, failed, valued_at)
        for path, name, ran, failed, valued_at in session.execute(query)
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test that takes this runs once on SQLite and once on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    database = Database.from_url(db_url)
    empty_all_tables(database)
    yield database
    database.dispose()


# --- broker -----------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> redis.Redis:
    client = redis.Redis.from_url(_worker_redis_url(), socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        unavailable(f"Redis is not reachable at {REDIS_URL}: {error}")
    return client


@pytest.fixture
def redis_url(redis_server: redis.Redis) -> str:
    """The test's Redis database, emptied first."""
    redis_server.flushdb()
    return _worker_redis_url()


@pytest.fixture
def settings(db_url: str, redis_url: str, database: Database) -> Settings:
    return Settings(database_url=db_url, broker_url=redis_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The app on the test's settings, in the test's process."""
    from scheduler.api.app import create_app

    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def server() -> Iterator[FakeProvider]:
    """A local server answering like GitHub's and GitLab's APIs
    (tests/fake_provider.py)."""
    yield from serve()


@pytest.fixture(scope="session")
def gitlab_samples(shared_dir: Path) -> Path:
    return shared_dir / "samples" / "dev" / "gitlab"
