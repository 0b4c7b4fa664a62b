"""POST /api/v1/repos/{owner}/{name}/runs on real databases and Redis:
reports are checked, stored once and queued; bad ones are refused with a
message and leave nothing behind."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from scheduler.db import Database
from scheduler.models import Commit, Provider, RunSource, SuiteRun
from scheduler.queue import RUNS_INGEST
from scheduler.services import repos, tokens
from tests.helpers import queued_tasks

URL = "/api/v1/repos/acme/app/runs"
SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
REPORT = b"""<testsuite name="s"><testcase classname="C" name="a"/>
<testcase classname="C" name="b"><failure message="no"/></testcase></testsuite>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<testsuite name="&lol4;"><testcase classname="C" name="a"/></testsuite>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<testsuite name="s"><testcase classname="C" name="&xxe;"/></testsuite>"""


@pytest.fixture
def tokens_by_name(database: Database) -> dict[str, str]:
    with database.session() as session:
        app = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/app")
        other = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/other")
        return {
            "app": tokens.create_token(
                session, repository=app, scopes=tokens.DEFAULT_SCOPES, name="ci"
            ).token,
            "read-only": tokens.create_token(
                session, repository=app, scopes=(tokens.Scope.PLANS_READ,), name="ro"
            ).token,
            "other": tokens.create_token(
                session, repository=other, scopes=tokens.DEFAULT_SCOPES, name="ci"
            ).token,
        }


def headers(token: str | None, content_type: str = "application/xml") -> dict[str, str]:
    result = {"Content-Type": content_type}
    if token is not None:
        result["Authorization"] = f"Bearer {token}"
    return result


def runs_stored(database: Database) -> list[SuiteRun]:
    with database.session() as session:
        return list(session.scalars(select(SuiteRun).order_by(SuiteRun.id)))


def test_junit_report_is_stored_and_queued(
    client: TestClient,
    database: Database,
    redis_server: redis.Redis,
    tokens_by_name: dict[str, str],
) -> None:
    response = client.post(
        URL,
        params={"commit": SHA, "branch": "main", "run_key": "build-7"},
        content=REPORT,
        headers=headers(tokens_by_name["app"]),
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    assert response.json() == {"status": "queued", "run_id": run_id, "tests": 2}
    [run] = runs_stored(database)
    assert (run.id, run.source, run.run_key, run.report) == (
        run_id,
        RunSource.JUNIT,
        "build-7",
        REPORT,
    )
    with database.session() as session:
        commit = session.get_one(Commit, run.commit_id)
        assert (commit.sha, commit.branch) == (SHA, "main")
    assert queued_tasks(redis_server) == [(RUNS_INGEST, [run_id])]


def test_gzipped_report_declared_or_not(
    client: TestClient, database: Database, tokens_by_name: dict[str, str]
) -> None:
    packed = gzip.compress(REPORT)
    declared = client.post(
        URL,
        params={"commit": SHA},
        content=packed,
        headers={**headers(tokens_by_name["app"]), "Content-Encoding": "gzip"},
    )
    assert declared.status_code == 202, declared.text
    # The same report again, gzipped without saying so: one stored report.
    sniffed = client.post(
        URL, params={"commit": SHA}, content=packed, headers=headers(tokens_by_name["app"])
    )
    assert sniffed.status_code == 200
    assert sniffed.json()["status"] == "duplicate"
    [run] = runs_stored(database)
    assert run.report == REPORT


def test_json_results_with_the_commit_in_the_body(
    client: TestClient, database: Database, tokens_by_name: dict[str, str]
) -> None:
    body = {
        "commit": SHA,
        "run_key": "k",
        "source": "pytest",
        "results": [
            {"test": "tests/test_a.py::test_x", "outcome": "failed", "duration": 0.5},
            {"test": "tests/test_a.py::test_x", "outcome": "passed", "attempt": 2},
        ],
    }
    response = client.post(
        URL, json=body, headers={"Authorization": f"Bearer {tokens_by_name['app']}"}
    )
    assert response.status_code == 202, response.text
    assert response.json()["tests"] == 1  # one test, two attempts
    [run] = runs_stored(database)
    assert (run.source, run.run_key) == (RunSource.PYTEST, "k")
    assert json.loads(run.report or b"") == body


AUTH_CASES = [
    pytest.param(None, 401, "Authorization: Bearer", id="no-token"),
    pytest.param("rr_not-a-real-token", 401, "not valid", id="unknown-token"),
    # The answer to an unknown repository: a token cannot probe which exist.
    pytest.param(
        "other",
        404,
        "repository acme/app is not registered, or the token is not for it",
        id="other-repository",
    ),
    pytest.param("read-only", 403, "results:write", id="missing-scope"),
]


@pytest.mark.parametrize(("token", "status", "message"), AUTH_CASES)
def test_tokens_work_for_their_repository_and_scopes_alone(
    client: TestClient,
    database: Database,
    tokens_by_name: dict[str, str],
    token: str | None,
    status: int,
    message: str,
) -> None:
    bearer = tokens_by_name.get(token or "", token)
    response = client.post(URL, params={"commit": SHA}, content=REPORT, headers=headers(bearer))
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert runs_stored(database) == []


def test_revoked_token_is_refused(
    client: TestClient, database: Database, tokens_by_name: dict[str, str]
) -> None:
    with database.session() as session:
        repository = repos.resolve_repository(session, full_name="acme/app")
        [first, *_] = tokens.list_tokens(session, repository=repository)
        assert tokens.revoke_token(session, repository=repository, token_id=first.id)
    response = client.post(
        URL, params={"commit": SHA}, content=REPORT, headers=headers(tokens_by_name["app"])
    )
    assert response.status_code == 401


def test_unknown_repository_is_404(
    client: TestClient, database: Database, tokens_by_name: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/repos/acme/nothing/runs",
        params={"commit": SHA},
        content=REPORT,
        headers=headers(tokens_by_name["app"]),
    )
    assert response.status_code == 404
    assert response.json() == {
        "detail": "repository acme/nothing is not registered, or the token is not for it"
    }


BAD_REPORTS = [
    pytest.param(BILLION_LAUGHS, "application/xml", 400, "entities", id="billion-laughs"),
    pytest.param(EXTERNAL_ENTITY, "application/xml", 400, "entities", id="external-entity"),
    pytest.param(b"this is not XML", "application/xml", 400, "not well-formed", id="not-xml"),
    pytest.param(b"", "application/xml", 400, "empty", id="empty"),
    pytest.param(b"<html><body>502</body></html>", "text/xml", 400, "HTML", id="html"),
    pytest.param(
        gzip.compress(b"x" * 40_000_000), "application/xml", 413, "inflates", id="gzip-bomb"
    ),
    pytest.param(b'{"results": "nope"}', "application/json", 400, "results", id="bad-json"),
    pytest.param(b'{"results": []}', "application/json", 400, "commit", id="json-no-commit"),
    pytest.param(
        b'{"commit": "%s", "results": [{"test": "t", "outcome": "exploded"}]}' % SHA.encode(),
        "application/json",
        400,
        "outcome",
        id="unknown-outcome",
    ),
    pytest.param(REPORT, "text/plain", 400, "Content-Type", id="wrong-content-type"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "message"), BAD_REPORTS)
def test_bad_reports_are_refused_and_store_nothing(
    client: TestClient,
    database: Database,
    redis_server: redis.Redis,
    tokens_by_name: dict[str, str],
    body: bytes,
    content_type: str,
    status: int,
    message: str,
) -> None:
    params = {} if content_type == "application/json" else {"commit": SHA}
    response = client.post(
        URL, params=params, content=body, headers=headers(tokens_by_name["app"], content_type)
    )
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert runs_stored(database) == []
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Commit)) == 0
    assert queued_tasks(redis_server) == []
    # The server is still there and takes a good report.
    ok = client.post(
        URL, params={"commit": SHA}, content=REPORT, headers=headers(tokens_by_name["app"])
    )
    assert ok.status_code == 202


def test_a_100_mb_report_is_413_before_it_is_read_whole(
    client: TestClient, database: Database, tokens_by_name: dict[str, str]
) -> None:
    def body() -> Iterator[bytes]:
        yield b"<testsuite>"
        chunk = b"<testcase classname='C' name='t'/>" * 30_000
        for _ in range(100):  # ~100 MB, streamed without a declared length
            yield chunk

    response = client.post(
        URL, params={"commit": SHA}, content=body(), headers=headers(tokens_by_name["app"])
    )
    assert response.status_code == 413
    assert "over the limit" in response.json()["detail"]
    assert runs_stored(database) == []


def test_missing_or_malformed_commit(
    client: TestClient, database: Database, tokens_by_name: dict[str, str]
) -> None:
    missing = client.post(URL, content=REPORT, headers=headers(tokens_by_name["app"]))
    assert missing.status_code == 400
    assert "commit is required" in missing.json()["detail"]
    malformed = client.post(
        URL,
        params={"commit": "not a sha; drop table"},
        content=REPORT,
        headers=headers(tokens_by_name["app"]),
    )
    assert malformed.status_code == 400
    assert "not a commit id" in malformed.json()["detail"]
    assert runs_stored(database) == []


NOT_COMMITS = [
    pytest.param(
        "HEAD", "'HEAD' is not a commit id: give the full 40 (or 64) hex digits", id="HEAD"
    ),
    pytest.param("main", "'main' is not a commit id", id="branch"),
    pytest.param("not-a-sha", "'not-a-sha' is not a commit id", id="not-a-sha"),
    pytest.param(SHA[:7], "is not a commit id (7 hex digits)", id="short"),
    pytest.param(SHA[:39], "is not a commit id (39 hex digits)", id="39-hex"),
    pytest.param(SHA + "0", "is not a commit id (41 hex digits)", id="41-hex"),
]


@pytest.mark.parametrize("kind", ["junit", "json"])
@pytest.mark.parametrize(("commit", "message"), NOT_COMMITS)
def test_a_report_for_what_is_not_a_commit_id_is_refused(
    client: TestClient,
    database: Database,
    redis_server: redis.Redis,
    tokens_by_name: dict[str, str],
    commit: str,
    message: str,
    kind: str,
) -> None:
    if kind == "junit":
        params, content, content_type = {"commit": commit}, REPORT, "application/xml"
    else:
        # A good commit in the query does not make up for a bad one in the body.
        body = {"commit": commit, "results": [{"test": "t", "outcome": "passed"}]}
        params, content = {"commit": SHA}, json.dumps(body).encode()
        content_type = "application/json"
    response = client.post(
        URL, params=params, content=content, headers=headers(tokens_by_name["app"], content_type)
    )
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]
    assert runs_stored(database) == []
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Commit)) == 0
    assert queued_tasks(redis_server) == []


def test_a_commit_id_in_capitals_or_of_sha_256_is_taken_in_lower_case(
    client: TestClient, database: Database, tokens_by_name: dict[str, str]
) -> None:
    sha256 = "9FCEB02D0AE598E95DC970B74767F19372D61AF8" + "0123456789ABCDEF01234567"
    for commit in (SHA.upper(), sha256):
        response = client.post(
            URL, params={"commit": commit}, content=REPORT, headers=headers(tokens_by_name["app"])
        )
        assert response.status_code == 202, response.text
    with database.session() as session:
        stored = session.scalars(select(Commit.sha).order_by(Commit.id)).all()
    assert stored == [SHA, sha256.lower()]


def test_unknown_plan_is_refused(
    client: TestClient, database: Database, tokens_by_name: dict[str, str]
) -> None:
    response = client.post(
        URL,
        params={"commit": SHA, "plan_id": 999},
        content=REPORT,
        headers=headers(tokens_by_name["app"]),
    )
    assert response.status_code == 400
    assert "plan 999" in response.json()["detail"]
    assert runs_stored(database) == []


def test_every_shared_junit_sample_is_accepted(
    client: TestClient, database: Database, tokens_by_name: dict[str, str], shared_dir: Path
) -> None:
    samples = sorted((shared_dir / "samples" / "dev" / "junit").glob("*.xml"))
    assert len(samples) == 31
    for sample in samples:
        response = client.post(
            URL,
            params={"commit": SHA, "run_key": sample.stem},
            content=sample.read_bytes(),
            headers=headers(tokens_by_name["app"]),
        )
        assert response.status_code == 202, (sample.name, response.text)
    assert len(runs_stored(database)) == 31
