"""The plan API takes a commit's full id only (issue 11, defect 2): a name
such as HEAD or main, or a short or overlong id, is refused with a 400 that
says what is expected, and nothing is stored for it; 64-digit (SHA-256) ids
are taken, and capitals are taken in lower case."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from scheduler.db import Database
from scheduler.models import Commit, Plan
from tests.planning.data import SHA

PLANS = "/api/v1/repos/acme/app/plans"
NOT_COMMITS = [
    pytest.param(
        "HEAD", "'HEAD' is not a commit id: give the full 40 (or 64) hex digits", id="HEAD"
    ),
    pytest.param("main", "'main' is not a commit id", id="branch"),
    pytest.param("not-a-sha", "'not-a-sha' is not a commit id", id="not-a-sha"),
    pytest.param(SHA[:39], f"'{SHA[:39]}' is not a commit id (39 hex digits)", id="39-hex"),
    pytest.param(SHA + "a", "is not a commit id (41 hex digits)", id="41-hex"),
    pytest.param("g" * 40, "is not a commit id", id="40-not-hex"),
]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def rows(database: Database) -> tuple[int, int]:
    """How many commits and plans are stored."""
    with database.session() as session:
        return (
            session.scalar(select(func.count()).select_from(Commit)) or 0,
            session.scalar(select(func.count()).select_from(Plan)) or 0,
        )


@pytest.mark.parametrize(("commit", "message"), NOT_COMMITS)
def test_what_is_not_a_commit_id_is_refused_and_stores_nothing(
    client: TestClient, database: Database, token: str, commit: str, message: str
) -> None:
    before = rows(database)
    got = client.get(f"{PLANS}/{commit}", headers=auth(token))
    posted = client.post(f"{PLANS}/{commit}", json={"mode": "order"}, headers=auth(token))
    for response in (got, posted):
        assert response.status_code == 400, response.text
        assert message in response.json()["detail"]
    assert rows(database) == before


def test_a_token_is_asked_for_before_the_commit_is_checked(client: TestClient) -> None:
    assert client.get(f"{PLANS}/HEAD").status_code == 401


def test_a_sha_256_id_is_planned(client: TestClient, database: Database, token: str) -> None:
    sha256 = "c0ffee" * 10 + "abcd"
    commits, plans = rows(database)
    response = client.get(f"{PLANS}/{sha256}", headers=auth(token))
    assert response.status_code == 200, response.text
    assert response.json()["commit"] == sha256
    assert rows(database) == (commits + 1, plans + 1)


def test_capitals_are_taken_in_lower_case(
    client: TestClient, database: Database, token: str
) -> None:
    upper = client.get(f"{PLANS}/{SHA.upper()}", headers=auth(token))
    lower = client.post(f"{PLANS}/{SHA}", json={}, headers=auth(token))
    assert (upper.status_code, lower.status_code) == (200, 200), upper.text
    assert upper.json()["commit"] == lower.json()["commit"] == SHA
    assert upper.json()["plan_id"] == lower.json()["plan_id"]
    with database.session() as session:
        assert session.scalars(select(Commit.sha).where(Commit.sha.ilike(SHA))).all() == [SHA]
