"""Hostile and unstorable input on the real app, PostgreSQL and SQLite: every
request here is refused with the exact 4xx, a message naming the field, and
not one row written nor task queued. What the worker would once have lost
after a 202 (a NUL in a test id, a test id past the index, a commit id past
its column, `additions` past 32 bits) is now refused at the edge, whole;
what fits up to its limit is accepted and stored, every result of it."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from scheduler import limits
from scheduler.db import Database
from scheduler.models import (
    Base,
    ChangedFile,
    CiEvent,
    Commit,
    EventStatus,
    Execution,
    KnownTest,
    Provider,
    RunSource,
    RunStatus,
    SuiteRun,
)
from scheduler.services import events, repos, runs, tokens
from tests.helpers import SECRET, generic_headers, github_headers, gitlab_headers, queued_tasks

SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
BEFORE = "89abcdef0123456789abcdef0123456789abcdef"
RUNS = "/api/v1/repos/acme/app/runs"
PLAN = f"/api/v1/repos/acme/app/plans/{SHA}"
DEEP = b"[" * 1000 + b"]" * 1000  # 2 KB of JSON nested 1,000 deep
# A year-9999 time with a zone west of UTC has no UTC equivalent.
LATE = "9999-12-31T23:00:00-05:00"
LONG = "x" * 300  # past every String(255) column


def random_text(alphabet: str, count: int, seed: int = 16) -> str:
    """Text that does not compress (PostgreSQL compresses index entries)."""
    chooser = random.Random(seed)  # noqa: S311 (test data, not a secret)
    return "".join(chooser.choice(alphabet) for _ in range(count))


CJK = "".join(chr(code) for code in range(0x4E00, 0x9FA5))
ASCII = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"


# --- bodies ---------------------------------------------------------------------


def github_commit(**changes: Any) -> dict[str, Any]:
    commit: dict[str, Any] = {
        "id": SHA,
        "message": "fix",
        "timestamp": "2024-05-01T12:00:00+02:00",
        "author": {"name": "Ada"},
        "added": [],
        "modified": ["src/a.py"],
        "removed": [],
    }
    commit.update(changes)
    return commit


def github_push(*, ref: str = "refs/heads/main", **commit: Any) -> bytes:
    head = github_commit(**commit)
    return json.dumps(
        {
            "ref": ref,
            "before": BEFORE,
            "after": head["id"],
            "created": False,
            "deleted": False,
            "forced": False,
            "repository": {"full_name": "acme/app", "default_branch": "main"},
            "commits": [head],
            "head_commit": head,
        }
    ).encode()


def gitlab_push(**commit: Any) -> bytes:
    head = github_commit(**commit)
    return json.dumps(
        {
            "object_kind": "push",
            "ref": "refs/heads/main",
            "before": BEFORE,
            "after": head["id"],
            "checkout_sha": head["id"],
            "project": {"path_with_namespace": "group/app", "default_branch": "main"},
            "commits": [head],
            "total_commits_count": 1,
        }
    ).encode()


def generic_body(**changes: Any) -> bytes:
    document: dict[str, Any] = {
        "repository": "acme/gen",
        "commit": SHA,
        "branch": "main",
        "changed_files": [
            {
                "path": "src/a.py",
                "additions": 1,
                "deletions": 0,
                "hunks": [
                    {"old_start": 1, "old_lines": 1, "new_start": 1, "new_lines": 2, "symbol": "f"}
                ],
            }
        ],
    }
    document.update(changes)
    return json.dumps(document).encode()


def results_json(test: str, *, message: str | None = None, count: int = 100) -> bytes:
    """`count` good results, and `test` (with `message`) among them, second."""
    results: list[dict[str, Any]] = [
        {"test": f"tests/test_a.py::test_{number}", "outcome": "passed"} for number in range(count)
    ]
    results.insert(1, {"test": test, "outcome": "failed", "message": message})
    return json.dumps({"commit": SHA, "branch": "main", "results": results}).encode()


def junit(name: str) -> bytes:
    return (
        '<testsuite name="s"><testcase classname="C" name="a"/>'
        f'<testcase classname="C" name="{name}"/></testsuite>'
    ).encode()


# --- requests -------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    results: str  # results:write on acme/app
    plans: str  # plans:read on acme/app


@dataclass(frozen=True)
class Case:
    """One hostile request: how to send it, the status, and the words the
    answer must hold (the field it names)."""

    send: Callable[[TestClient, Keys], Any]
    status: int
    names: str
    raw: dict[str, Any] = field(default_factory=dict)


def github(body: bytes, **header_changes: str | bytes) -> Callable[[TestClient, Keys], Any]:
    def send(client: TestClient, _keys: Keys) -> Any:
        headers: dict[str, Any] = {**github_headers(body), **header_changes}
        return client.post("/webhooks/github", content=body, headers=headers)

    return send


def github_event(event: str, document: dict[str, Any]) -> Callable[[TestClient, Keys], Any]:
    body = json.dumps(document).encode()
    return github(body, **{"X-GitHub-Event": event})


def gitlab(body: bytes, **header_changes: str) -> Callable[[TestClient, Keys], Any]:
    def send(client: TestClient, _keys: Keys) -> Any:
        headers = {**gitlab_headers(), **header_changes}
        return client.post("/webhooks/gitlab", content=body, headers=headers)

    return send


def generic(body: bytes, **header_changes: str | bytes) -> Callable[[TestClient, Keys], Any]:
    def send(client: TestClient, _keys: Keys) -> Any:
        headers: dict[str, Any] = {**generic_headers(body), **header_changes}
        return client.post("/webhooks/generic", content=body, headers=headers)

    return send


def report(
    body: bytes,
    *,
    content_type: str = "application/json",
    params: dict[str, Any] | None = None,
    url: str = RUNS,
) -> Callable[[TestClient, Keys], Any]:
    def send(client: TestClient, keys: Keys) -> Any:
        headers = {"Authorization": f"Bearer {keys.results}", "Content-Type": content_type}
        return client.post(url, content=body, headers=headers, params=params)

    return send


def plan_get(query: str) -> Callable[[TestClient, Keys], Any]:
    def send(client: TestClient, keys: Keys) -> Any:
        return client.get(f"{PLAN}?{query}", headers={"Authorization": f"Bearer {keys.plans}"})

    return send


def plan_post(body: bytes) -> Callable[[TestClient, Keys], Any]:
    def send(client: TestClient, keys: Keys) -> Any:
        headers = {"Authorization": f"Bearer {keys.plans}", "Content-Type": "application/json"}
        return client.post(PLAN, content=body, headers=headers)

    return send


def signed_generic(raw: bytes) -> Callable[[TestClient, Keys], Any]:
    """A generic event whose raw body is `raw`, signed: what a JSON
    serializer cannot write (a lone surrogate escape) goes in as is."""
    return generic(raw)


BAD_SIGNATURE = b"sha256=\xe9" + b"0" * 63
CJK_ID = random_text(CJK, 4000)  # within 4,000 characters, 12,000 bytes
LONG_ASCII_ID = random_text(ASCII, 3000)  # past the index, and incompressible
LONG_PATH = "src/" + random_text(ASCII, 3000) + ".py"

CASES: dict[str, Case] = {
    # Before any signature check: anyone can send these.
    "github json 1000 deep": Case(github(b'{"a":' + DEEP + b"}"), 400, "recursion limit"),
    "gitlab json 1000 deep": Case(gitlab(b'{"a":' + DEEP + b"}"), 400, "recursion limit"),
    "generic json 1000 deep": Case(generic(b'{"a":' + DEEP + b"}"), 400, "recursion limit"),
    "github json 65 deep": Case(
        github(b'{"a":' + b"[" * 65 + b"]" * 65 + b"}"), 422, "nested more than 64"
    ),
    "github non-ascii signature": Case(
        github(github_push(), **{"X-Hub-Signature-256": BAD_SIGNATURE}), 401, "X-Hub-Signature-256"
    ),
    "generic non-ascii signature": Case(
        generic(generic_body(), **{"X-Riskrank-Signature-256": BAD_SIGNATURE}),
        401,
        "X-Riskrank-Signature-256",
    ),
    "github nul in repository name": Case(
        github_event("push", {"ref": "refs/heads/main", "repository": {"full_name": "acme/a\0"}}),
        422,
        "body.repository.full_name",
    ),
    "gitlab nul in project path": Case(
        gitlab(json.dumps({"project": {"path_with_namespace": "group/a\0"}}).encode()),
        422,
        "body.project.path_with_namespace",
    ),
    "generic nul in repository": Case(
        generic(generic_body(repository="acme/gen\0")), 422, "body.repository"
    ),
    "nul in a json key": Case(generic(generic_body(**{"a\0": 1})), 422, "body key"),
    # After authentication.
    "github delivery id too long": Case(
        github(github_push(), **{"X-GitHub-Delivery": LONG}), 422, "X-GitHub-Delivery"
    ),
    "gitlab idempotency key too long": Case(
        gitlab(gitlab_push(), **{"Idempotency-Key": LONG}), 422, "Idempotency-Key"
    ),
    "gitlab event uuid too long": Case(
        gitlab(gitlab_push(), **{"Idempotency-Key": "", "X-Gitlab-Event-UUID": LONG}),
        422,
        "X-Gitlab-Event-UUID",
    ),
    "generic delivery id too long": Case(
        generic(generic_body(), **{"X-Riskrank-Delivery": LONG}), 400, "X-Riskrank-Delivery"
    ),
    "github ping action too long": Case(
        github_event("ping", {"zen": "z", "action": LONG, "repository": {"full_name": "acme/app"}}),
        422,
        "action",
    ),
    "runs branch too long": Case(
        report(junit("b"), content_type="application/xml", params={"commit": SHA, "branch": LONG}),
        422,
        "branch",
    ),
    "runs run_key too long": Case(
        report(junit("b"), content_type="application/xml", params={"commit": SHA, "run_key": LONG}),
        422,
        "run_key",
    ),
    "runs content type too long": Case(
        report(junit("b"), content_type=f"application/{LONG}+xml", params={"commit": SHA}),
        422,
        "Content-Type",
    ),
    "runs plan_id past 64 bits": Case(
        report(
            junit("b"), content_type="application/xml", params={"commit": SHA, "plan_id": 2**64}
        ),
        422,
        "plan_id",
    ),
    "runs json plan_id past 64 bits": Case(
        report(json.dumps({"commit": SHA, "plan_id": 2**64, "results": []}).encode()),
        400,
        "plan_id",
    ),
    "nul in the path": Case(
        report(junit("b"), content_type="application/xml", url="/api/v1/repos/ac%00me/app/runs"),
        400,
        "path",
    ),
    "nul in the query": Case(
        report(
            junit("b"), content_type="application/xml", params={"commit": SHA, "branch": "a\0b"}
        ),
        400,
        "query parameter 'branch'",
    ),
    "nul in a plan's test list": Case(plan_get("tests=a%00b"), 400, "query parameter 'tests'"),
    "plan branch too long": Case(plan_get(f"branch={LONG}"), 422, "branch"),
    "plan budget of 400 digits": Case(plan_get("mode=time&budget=" + "9" * 400), 400, "budget"),
    "plan body budget of 400 digits": Case(
        plan_post(b'{"mode": "time", "budget": ' + b"9" * 400 + b"}"), 400, "budget"
    ),
    "plan body 1000 deep": Case(plan_post(b'{"tests":' + DEEP + b"}"), 400, "not JSON"),
    "plan body nul in a test id": Case(
        plan_post(json.dumps({"tests": ["a", "b\0"]}).encode()), 422, "tests[1]"
    ),
    "generic time out of range": Case(generic(generic_body(time=LATE)), 400, "time"),
    "github commit time out of range": Case(
        github(github_push(timestamp=LATE)), 422, "commits[0].timestamp"
    ),
    "gitlab commit time out of range": Case(
        gitlab(gitlab_push(timestamp=LATE)), 422, "commits[0].timestamp"
    ),
    "generic nul in message": Case(generic(generic_body(message="a\0b")), 422, "body.message"),
    "github nul in commit message": Case(github(github_push(message="a\0b")), 422, "message"),
    "generic lone surrogate": Case(
        signed_generic(generic_body(message="SURROGATE").replace(b"SURROGATE", b"\\ud800")),
        400,
        "not valid JSON",
    ),
    "github lone surrogate": Case(
        github(github_push(message="SURROGATE").replace(b"SURROGATE", b"\\udc00")),
        400,
        "not valid JSON",
    ),
    "generic infinity": Case(
        generic(generic_body(message="INF").replace(b'"INF"', b"1e999")), 422, "body.message"
    ),
    "github form body nul": Case(
        github(
            b"payload="
            + quote(github_push().replace(b'"acme/app"', b'"acme/app\\u0000"')).encode(),
            **{"Content-Type": "application/x-www-form-urlencoded"},
        ),
        422,
        "body.repository.full_name",
    ),
    "generic nan": Case(
        generic(generic_body(message="NAN").replace(b'"NAN"', b"NaN")), 400, "JSON"
    ),
    # Accepted with 202 and then lost in the worker, before.
    "results nul in a test id": Case(
        report(results_json("tests/a.py::t\0")), 422, "results[1].test"
    ),
    "results 4000 cjk characters": Case(report(results_json(CJK_ID)), 422, "results[1].test"),
    "results 3000-byte ascii test id": Case(
        report(results_json(LONG_ASCII_ID)), 422, "results[1].test"
    ),
    "results nul in a message": Case(
        report(results_json("tests/a.py::t", message="a\0b")), 422, "results[1].message"
    ),
    "results json branch nul": Case(
        report(json.dumps({"commit": SHA, "branch": "a\0", "results": []}).encode()), 422, "branch"
    ),
    "results json run_key nul": Case(
        report(json.dumps({"commit": SHA, "run_key": "a\0", "results": []}).encode()),
        422,
        "run_key",
    ),
    "results json branch too long": Case(
        report(json.dumps({"commit": SHA, "branch": LONG, "results": []}).encode()), 400, "branch"
    ),
    "results nul in a file": Case(
        report(
            json.dumps(
                {"commit": SHA, "results": [{"test": "t", "outcome": "passed", "file": "a\0"}]}
            ).encode()
        ),
        422,
        "results[0].file",
    ),
    "junit 4000 cjk characters": Case(
        report(junit(CJK_ID), content_type="application/xml", params={"commit": SHA}),
        422,
        "testcase[1].test",
    ),
    "github commit id past 64": Case(github(github_push(id="a" * 65)), 422, "commits[0].id"),
    "github branch past 255": Case(github(github_push(ref="refs/heads/" + LONG)), 422, "ref"),
    "github author past 255": Case(
        github(github_push(author={"name": LONG})), 422, "commits[0].author.name"
    ),
    "github path past the index": Case(
        github(github_push(modified=[LONG_PATH])), 422, "commits[0].modified[0]"
    ),
    "gitlab commit id past 64": Case(gitlab(gitlab_push(id="b" * 65)), 422, "checkout_sha"),
    "generic additions of 2^31": Case(
        generic(generic_body(changed_files=[{"path": "a", "additions": 2**31, "deletions": 0}])),
        400,
        "changed_files[0].additions",
    ),
    "generic author past 255": Case(generic(generic_body(author=LONG)), 400, "author"),
    "generic path past the index": Case(
        generic(generic_body(changed_files=[{"path": LONG_PATH}])), 400, "changed_files[0].path"
    ),
}


def string_places(document: Any, where: str = "body") -> list[tuple[str, list[Any]]]:
    """Every string of a JSON document: its path as the API names it, and
    the keys that lead to it."""
    if isinstance(document, str):
        return [(where, [])]
    items = (
        document.items()
        if isinstance(document, dict)
        else enumerate(document)
        if isinstance(document, list)
        else []
    )
    places = []
    for key, value in items:
        inner = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}"
        places += [(path, [key, *keys]) for path, keys in string_places(value, inner)]
    return places


def with_nul(document: Any, keys: list[Any]) -> bytes:
    changed = json.loads(json.dumps(document))
    parent = changed
    for key in keys[:-1]:
        parent = parent[key]
    parent[keys[-1]] += "\0"
    return json.dumps(changed).encode()


# A NUL in every string of each provider's body: refused (422) before it is
# stored, naming the string's place, whatever the field.
for label, sender, document in (
    ("github", github, json.loads(github_push())),
    ("gitlab", gitlab, json.loads(gitlab_push())),
    ("generic", generic, json.loads(generic_body())),
):
    for path, keys in string_places(document):
        CASES[f"{label} nul in {path}"] = Case(sender(with_nul(document, keys)), 422, path)


@pytest.fixture
def keys(database: Database) -> Keys:
    """acme/app on GitHub (the results and plans token's), group/app on
    GitLab and acme/gen for generic events, all with the tests' secret."""
    with database.session() as session:
        app = repos.add_repository(
            session, provider=Provider.GITHUB, full_name="acme/app", webhook_secret=SECRET
        )
        repos.add_repository(
            session, provider=Provider.GITLAB, full_name="group/app", webhook_secret=SECRET
        )
        repos.add_repository(
            session, provider=Provider.GENERIC, full_name="acme/gen", webhook_secret=SECRET
        )
        return Keys(
            results=tokens.create_token(
                session, repository=app, scopes=(tokens.Scope.RESULTS_WRITE,), name="up"
            ).token,
            plans=tokens.create_token(
                session, repository=app, scopes=(tokens.Scope.PLANS_READ,), name="ci"
            ).token,
        )


def row_counts(database: Database) -> dict[str, int]:
    with database.session() as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_refused_with_a_4xx_naming_the_field_and_nothing_written(
    client: TestClient, database: Database, redis_server: redis.Redis, keys: Keys, case: Case
) -> None:
    before = row_counts(database)

    response = case.send(client, keys)

    assert response.status_code == case.status, response.text
    assert case.names in response.json()["detail"], response.text
    after = row_counts(database)
    # The plan API's token lookup stamps last_used_at: an update, no new row.
    assert after == before
    assert queued_tasks(redis_server) == []


def test_the_case_count_covers_every_class() -> None:
    assert len(CASES) >= 80


# --- what fits is stored, every result of it --------------------------------------


def test_a_report_at_the_limits_is_ingested_whole(
    client: TestClient, database: Database, keys: Keys
) -> None:
    """A test id of exactly TEST_ID_BYTES incompressible bytes (and CJK
    among them) and 100 other results: all 101 end as executions."""
    longest = random_text(CJK, 600) + random_text(ASCII, limits.TEST_ID_BYTES - 1800)
    assert len(longest.encode()) == limits.TEST_ID_BYTES
    response = report(results_json(longest, message="boom"))(client, keys)
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]

    with database.session() as session:
        assert runs.ingest_run(session, run_id) is RunStatus.INGESTED
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Execution)) == 101
        assert session.scalar(select(KnownTest.id).where(KnownTest.name == longest)) is not None


def test_a_push_at_the_limits_is_stored_whole(
    client: TestClient, database: Database, keys: Keys
) -> None:
    sha = "c" * limits.SHA_CHARS
    branch = "b" * limits.NAME_CHARS
    author = "å" * limits.NAME_CHARS
    path = "src/" + random_text(ASCII, limits.PATH_BYTES - 4)
    body = github_push(ref="refs/heads/" + branch, id=sha, author={"name": author}, modified=[path])
    response = github(body)(client, keys)
    assert response.status_code == 202, response.text

    with database.session() as session:
        assert events.process_event(session, response.json()["event_id"]) is EventStatus.HANDLED
    with database.session() as session:
        commit = session.scalars(select(Commit)).one()
        assert (commit.sha, commit.branch, commit.author_name) == (sha, branch, author)
        assert session.scalars(select(ChangedFile.path)).all() == [path]


def test_a_generic_event_at_the_limits_is_stored_whole(
    client: TestClient, database: Database, keys: Keys
) -> None:
    body = generic_body(
        time="9999-12-31T23:00:00+05:00",
        changed_files=[{"path": "a", "additions": limits.INT32_MAX, "deletions": 0}],
    )
    response = generic(body)(client, keys)
    assert response.status_code == 202, response.text

    with database.session() as session:
        assert events.process_event(session, response.json()["event_id"]) is EventStatus.HANDLED
    with database.session() as session:
        assert session.scalars(select(ChangedFile.additions)).one() == limits.INT32_MAX
        author_time = session.scalars(select(Commit.author_time)).one()
        assert author_time is not None
        assert author_time.year == 9999


def failed_at_once(
    database: Database,
    model: type[SuiteRun] | type[CiEvent],
    row_id: int,
    field: str,
    *,
    written: type[Base],
) -> None:
    """The row failed on its first attempt, its error names `field`, and
    no `written` row came of it."""
    with database.session() as session:
        row = session.get_one(model, row_id)
        assert row.attempts == 1
        assert row.error is not None
        assert field in row.error
        assert session.scalar(select(func.count()).select_from(written)) == 0


def test_a_report_stored_before_the_checks_fails_at_once_with_the_field(
    database: Database, keys: Keys
) -> None:
    """A report stored without the API's checks (an older riskrank) is not
    retried ten times: it fails on its first attempt, saying why."""
    with database.session() as session:
        stored = runs.store_run(
            session,
            repository=repos.resolve_repository(session, full_name="acme/app"),
            commit_sha=SHA,
            branch=None,
            run_key=None,
            plan_id=None,
            source=RunSource.JSON,
            content_type="application/json",
            report=results_json(CJK_ID),
        )
    with database.session() as session:
        assert runs.ingest_run(session, stored.id) is RunStatus.FAILED
    failed_at_once(database, SuiteRun, stored.id, "results[1].test", written=Execution)


def test_the_columns_and_the_checks_share_one_limit() -> None:
    assert Commit.__table__.c.sha.type.length == limits.SHA_CHARS
    assert Commit.__table__.c.branch.type.length == limits.NAME_CHARS
    assert Commit.__table__.c.author_name.type.length == limits.NAME_CHARS
    assert CiEvent.__table__.c.delivery_id.type.length == limits.NAME_CHARS
    assert CiEvent.__table__.c.action.type.length == limits.EVENT_CHARS
    assert SuiteRun.__table__.c.run_key.type.length == limits.NAME_CHARS
    assert SuiteRun.__table__.c.content_type.type.length == limits.NAME_CHARS


def test_the_test_id_limit_fits_the_index(database: Database, keys: Keys) -> None:
    """TEST_ID_BYTES incompressible bytes go into known_tests' unique index
    on both backends (PostgreSQL's btree holds 2,704 bytes an entry)."""
    name = random_text(ASCII, limits.TEST_ID_BYTES, seed=3)
    with database.session() as session:
        repository = repos.resolve_repository(session, full_name="acme/app")
        session.add(KnownTest(repository_id=repository.id, name=name))
    with database.session() as session:
        assert session.scalar(select(KnownTest.name)) == name


def test_a_push_stored_before_the_checks_fails_at_once_with_the_field(
    database: Database, keys: Keys
) -> None:
    """The same for a push stored before: its commit id past 64 characters
    fails the event on its first attempt, naming the field."""
    with database.session() as session:
        stored = events.store_event(
            session,
            repository_id=repos.resolve_repository(session, full_name="acme/app").id,
            provider=Provider.GITHUB,
            delivery_id="old-1",
            event="push",
            payload=json.loads(github_push(id="d" * 65)),
        )
    with database.session() as session:
        assert events.process_event(session, stored.id) is EventStatus.FAILED
    failed_at_once(database, CiEvent, stored.id, "commits[0].id", written=Commit)
