"""What the API tests share (the app on the test's settings is
tests/conftest.py's `client`): for the plan API, the small repository of
tests/planning/data.py with its token."""

from __future__ import annotations

import pytest

from scheduler.db import Database
from tests.planning.data import make_repository, make_tokens


@pytest.fixture
def repository_id(database: Database) -> int:
    return make_repository(database)


@pytest.fixture
def token(database: Database, repository_id: int) -> str:
    """A plans:read token of the plan tests' repository."""
    return make_tokens(database)["plans"]
