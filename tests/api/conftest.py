"""What the API tests share: the app on the test's settings, and for the
plan API, the small repository of tests/planning/data.py with its token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from scheduler.api.app import create_app
from scheduler.config import Settings
from scheduler.db import Database
from tests.planning.data import make_repository, make_tokens


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def repository_id(database: Database) -> int:
    return make_repository(database)


@pytest.fixture
def token(database: Database, repository_id: int) -> str:
    """A plans:read token of the plan tests' repository."""
    return make_tokens(database)["plans"]
