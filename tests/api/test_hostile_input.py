"""Hostile and unstorable input on the real app, PostgreSQL and SQLite: every
request here is refused with the exact 4xx, a message naming the field, and
not one row written nor task queued. What the worker would once have lost
after a 202 (a NUL in a test id, a test id past the index, a commit id past
its column, `additions` past 32 bits) is now refused at the edge, whole;
what fits up to its limit is accepted and stored, every result of it.

The classes of issue 16, each on every endpoint it applies to: JSON nested
too deep; signature and token headers that are not ASCII, not hex, not the
scheme; a NUL and a lone surrogate in every string of each provider's body,
and over-long values in every stored field; numbers and times out of range;
over-long ids; bad content types and encodings; oversized headers and URLs;
over-long lists. The status follows the rule of scheduler.errors (422 for a
value past a bound, 400 for what cannot be read).

The refused requests share one app, client and seed per backend (a module
fixture): none of them may write anything, which each checks, so none needs
a fresh database, and the suite stays fast."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from scheduler import limits
from scheduler.api.app import create_app
from scheduler.config import Settings
from scheduler.db import Database
from scheduler.ingest.errors import Unstorable
from scheduler.ingest.results import CaseResult, storable_results
from scheduler.models import (
    Base,
    ChangedFile,
    CiEvent,
    Commit,
    EventStatus,
    Execution,
    KnownTest,
    Outcome,
    Provider,
    RunSource,
    RunStatus,
    SuiteRun,
)
from scheduler.queue import QUEUE_NAME
from scheduler.services import events, repos, runs, tokens
from tests.conftest import _worker_redis_url, empty_all_tables
from tests.helpers import SECRET, generic_headers, github_headers, gitlab_headers

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
    "github json 1000 deep": Case(github(b'{"a":' + DEEP + b"}"), 422, "nested more than 64"),
    "gitlab json 1000 deep": Case(gitlab(b'{"a":' + DEEP + b"}"), 422, "nested more than 64"),
    "generic json 1000 deep": Case(generic(b'{"a":' + DEEP + b"}"), 422, "nested more than 64"),
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
        generic(generic_body(), **{"X-Riskrank-Delivery": LONG}), 422, "X-Riskrank-Delivery"
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
        422,
        "plan_id",
    ),
    "nul in the path": Case(
        report(junit("b"), content_type="application/xml", url="/api/v1/repos/ac%00me/app/runs"),
        422,
        "path",
    ),
    "nul in the query": Case(
        report(
            junit("b"), content_type="application/xml", params={"commit": SHA, "branch": "a\0b"}
        ),
        422,
        "query parameter 'branch'",
    ),
    "nul in a plan's test list": Case(plan_get("tests=a%00b"), 422, "query parameter 'tests'"),
    "plan branch too long": Case(plan_get(f"branch={LONG}"), 422, "branch"),
    "plan budget of 400 digits": Case(plan_get("mode=time&budget=" + "9" * 400), 422, "budget"),
    "plan body budget of 400 digits": Case(
        plan_post(b'{"mode": "time", "budget": ' + b"9" * 400 + b"}"), 422, "budget"
    ),
    "plan body 1000 deep": Case(plan_post(b'{"tests":' + DEEP + b"}"), 422, "nested more than 64"),
    "plan body nul in a test id": Case(
        plan_post(json.dumps({"tests": ["a", "b\0"]}).encode()), 422, "tests[1]"
    ),
    "generic time out of range": Case(generic(generic_body(time=LATE)), 422, "time"),
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
        422,
        "body.message: must not contain a lone surrogate",
    ),
    "github lone surrogate": Case(
        github(github_push(message="SURROGATE").replace(b"SURROGATE", b"\\udc00")),
        422,
        "message: must not contain a lone surrogate",
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
        report(json.dumps({"commit": SHA, "branch": LONG, "results": []}).encode()), 422, "branch"
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
        422,
        "changed_files[0].additions",
    ),
    "generic author past 255": Case(generic(generic_body(author=LONG)), 422, "author"),
    "generic path past the index": Case(
        generic(generic_body(changed_files=[{"path": LONG_PATH}])), 422, "changed_files[0].path"
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


def changed(document: Any, keys: list[Any], change: Callable[[Any], Any]) -> bytes:
    """`document` with the value at `keys` changed, as JSON (a lone
    surrogate written as its `\\udXXX` escape, as any JSON encoder does)."""
    copy = json.loads(json.dumps(document))
    parent = copy
    for key in keys[:-1]:
        parent = parent[key]
    parent[keys[-1]] = change(parent[keys[-1]])
    return json.dumps(copy).encode()


def with_nul(document: Any, keys: list[Any]) -> bytes:
    return changed(document, keys, lambda value: value + "\0")


def with_surrogate(document: Any, keys: list[Any]) -> bytes:
    return changed(document, keys, lambda value: value + "\ud800")


# A NUL, and a lone surrogate, in every string of each provider's body:
# refused (422) before it is stored, naming the string's place, whatever the
# field.
for label, sender, document in (
    ("github", github, json.loads(github_push())),
    ("gitlab", gitlab, json.loads(gitlab_push())),
    ("generic", generic, json.loads(generic_body())),
):
    for path, keys in string_places(document):
        CASES[f"{label} nul in {path}"] = Case(sender(with_nul(document, keys)), 422, path)
        CASES[f"{label} lone surrogate in {path}"] = Case(
            sender(with_surrogate(document, keys)),
            422,
            f"{path}: must not contain a lone surrogate",
        )


# --- more classes: over-long values, numbers and times out of range, ---------------
# --- signature bytes, content types, heads, lists ----------------------------------

OLDEST = "0001-01-01T00:30:00+01:00"  # before the first datetime in UTC
HUGE = "x" * 9000  # one header past limits.HEADER_BYTES
SHA65 = "a" * 65


def with_headers(
    send: Callable[[TestClient, Keys], Any], **extra: str
) -> Callable[[TestClient, Keys], Any]:
    """`send`, but through a client whose requests carry `extra` headers."""

    def sent(client: TestClient, keys: Keys) -> Any:
        saved = dict(client.headers)
        client.headers.update(extra)
        try:
            return send(client, keys)
        finally:
            client.headers.clear()
            client.headers.update(saved)

    return sent


def many_headers(count: int = 10, size: int = 4000) -> dict[str, str]:
    """Headers each under limits.HEADER_BYTES, past limits.HEADERS_BYTES in all."""
    return {f"X-Padding-{number}": "p" * size for number in range(count)}


def healthz(query: str = "") -> Callable[[TestClient, Keys], Any]:
    def send(client: TestClient, _keys: Keys) -> Any:
        return client.get(f"/healthz?{query}" if query else "/healthz")

    return send


def plan_token(value: str | bytes) -> Callable[[TestClient, Keys], Any]:
    def send(client: TestClient, _keys: Keys) -> Any:
        return client.get(PLAN, headers={"Authorization": value})

    return send


def post_path(url: str, body: bytes = b"{}") -> Callable[[TestClient, Keys], Any]:
    def send(client: TestClient, keys: Keys) -> Any:
        headers = {"Authorization": f"Bearer {keys.plans}", "Content-Type": "application/json"}
        return client.post(url, content=body, headers=headers)

    return send


def github_paths(key: str, count: int) -> bytes:
    return github_push(**{key: [f"src/f{number}.py" for number in range(count)]})


HEAD_SENDERS: dict[str, Callable[[TestClient, Keys], Any]] = {
    "github": github(github_push()),
    "gitlab": gitlab(gitlab_push()),
    "generic": generic(generic_body()),
    "runs": report(junit("b"), content_type="application/xml", params={"commit": SHA}),
    "plan get": plan_get("mode=order"),
    "plan post": plan_post(b"{}"),
    "healthz": healthz(),
}
for label, sender in HEAD_SENDERS.items():
    CASES[f"{label} header past 8 KiB"] = Case(
        with_headers(sender, **{"X-Big": HUGE}), 431, "header x-big"
    )
    CASES[f"{label} headers past 32 KiB in all"] = Case(
        with_headers(sender, **many_headers()), 431, "the headers are"
    )
    CASES[f"{label} nul in a header"] = Case(
        with_headers(sender, **{"X-Note": "a\0b"}), 422, "header x-note"
    )
CASES.update(
    {
        # URLs past limits.URL_BYTES, before any handler (and any token check).
        "plan get url past 8 KiB": Case(plan_get("tests=" + "t" * 9000), 414, "the URL is"),
        "plan get 2000 test ids past the url": Case(
            plan_get("&".join(f"tests=tests/test_a.py::test_{n}" for n in range(2000))),
            414,
            "POST body",
        ),
        "runs url past 8 KiB": Case(
            report(junit("b"), content_type="application/xml", params={"branch": "b" * 9000}),
            414,
            "the URL is",
        ),
        "healthz url past 8 KiB": Case(healthz("q=" + "q" * 9000), 414, "the URL is"),
        "plan sha past the url": Case(
            post_path(f"/api/v1/repos/acme/app/plans/{'a' * 9000}"), 414, "the URL is"
        ),
        # Signature headers: not ASCII, not hex, not sha256, empty digest.
        "github latin-1 signature": Case(
            github(github_push(), **{"X-Hub-Signature-256": b"sha256=\xff\xfe"}),
            401,
            "X-Hub-Signature-256",
        ),
        "github signature not hex": Case(
            github(github_push(), **{"X-Hub-Signature-256": "sha256=" + "z" * 64}),
            401,
            "X-Hub-Signature-256",
        ),
        "github signature sha1": Case(
            github(github_push(), **{"X-Hub-Signature-256": "sha1=" + "0" * 40}),
            401,
            "X-Hub-Signature-256",
        ),
        "github signature empty digest": Case(
            github(github_push(), **{"X-Hub-Signature-256": "sha256="}),
            401,
            "X-Hub-Signature-256",
        ),
        "github signature past 8 KiB": Case(
            github(github_push(), **{"X-Hub-Signature-256": "sha256=" + "0" * 9000}),
            431,
            "x-hub-signature-256",
        ),
        "generic latin-1 signature": Case(
            generic(generic_body(), **{"X-Riskrank-Signature-256": b"sha256=\xe9\xe9"}),
            401,
            "X-Riskrank-Signature-256",
        ),
        "generic signature not hex": Case(
            generic(generic_body(), **{"X-Riskrank-Signature-256": "sha256=" + "g" * 64}),
            401,
            "X-Riskrank-Signature-256",
        ),
        "gitlab latin-1 token": Case(
            gitlab(gitlab_push(), **{"X-Gitlab-Token": b"\xe9t\xe9"}),  # type: ignore[arg-type]
            401,
            "X-Gitlab-Token",
        ),
        "gitlab empty token": Case(
            gitlab(gitlab_push(), **{"X-Gitlab-Token": ""}), 401, "X-Gitlab-Token"
        ),
        "plan latin-1 bearer token": Case(plan_token(b"Bearer \xe9\xe9"), 401, "token"),
        "plan token without bearer": Case(plan_token("Basic abc"), 401, "Bearer"),
        # Over-long values of every stored field not above.
        "github before past 64": Case(
            github(json.dumps({**json.loads(github_push()), "before": SHA65}).encode()),
            422,
            "before",
        ),
        "github head commit id past 64": Case(
            github(
                json.dumps(
                    {
                        **json.loads(github_push()),
                        "commits": [],
                        "head_commit": github_commit(id=SHA65),
                    }
                ).encode()
            ),
            422,
            "head_commit.id",
        ),
        "github added path past the index": Case(
            github(github_push(added=[LONG_PATH])), 422, "commits[0].added[0]"
        ),
        "github removed path past the index": Case(
            github(github_push(removed=[LONG_PATH])), 422, "commits[0].removed[0]"
        ),
        "github delivery id of 256": Case(
            github(github_push(), **{"X-GitHub-Delivery": "d" * 256}), 422, "X-GitHub-Delivery"
        ),
        "gitlab branch past 255": Case(
            gitlab(
                gitlab_push().replace(b'"refs/heads/main"', b'"refs/heads/' + LONG.encode() + b'"')
            ),
            422,
            "ref",
        ),
        "gitlab before past 64": Case(
            gitlab(gitlab_push().replace(BEFORE.encode(), SHA65.encode())), 422, "before"
        ),
        "gitlab author past 255": Case(
            gitlab(gitlab_push(author={"name": LONG})), 422, "commits[0].author.name"
        ),
        "gitlab path past the index": Case(
            gitlab(gitlab_push(modified=[LONG_PATH])), 422, "commits[0].modified[0]"
        ),
        "generic branch past 255": Case(generic(generic_body(branch=LONG)), 422, "branch"),
        "generic body delivery id past 200": Case(
            generic(generic_body(delivery_id="d" * 201)), 422, "delivery_id"
        ),
        "generic old path past the index": Case(
            generic(generic_body(changed_files=[{"path": "a", "old_path": LONG_PATH}])),
            422,
            "changed_files[0].old_path",
        ),
        "generic symbol past 200": Case(
            generic(
                generic_body(
                    changed_files=[
                        {
                            "path": "a",
                            "hunks": [
                                {
                                    "old_start": 1,
                                    "old_lines": 1,
                                    "new_start": 1,
                                    "new_lines": 1,
                                    "symbol": "s" * 201,
                                }
                            ],
                        }
                    ]
                )
            ),
            422,
            "changed_files[0].hunks[0].symbol",
        ),
        "generic repository past 511": Case(
            generic(generic_body(repository="a/" + "r" * 600)), 401, "X-Riskrank-Signature-256"
        ),
        "results run_key past 255": Case(
            report(json.dumps({"commit": SHA, "run_key": LONG, "results": []}).encode()),
            422,
            "run_key",
        ),
        "results file past 4000": Case(
            report(
                json.dumps(
                    {
                        "commit": SHA,
                        "results": [{"test": "t", "outcome": "passed", "file": "f" * 4001}],
                    }
                ).encode()
            ),
            422,
            "results[0].file",
        ),
        "results commit past 64": Case(
            report(json.dumps({"commit": SHA65, "results": []}).encode()), 422, "commit"
        ),
        "runs commit of 65 hex": Case(
            report(junit("b"), content_type="application/xml", params={"commit": SHA65}),
            400,
            "commit id",
        ),
        "plan shard past 255": Case(plan_get("shard=" + "1" * 300), 422, "shard"),
        "plan mode past 255": Case(plan_get("mode=" + "m" * 300), 422, "mode"),
        "plan body branch past 255": Case(
            plan_post(json.dumps({"branch": LONG}).encode()), 422, "branch"
        ),
        "plan body test id past the index": Case(
            plan_post(json.dumps({"tests": ["a", LONG_ASCII_ID]}).encode()), 422, "tests[1]"
        ),
        "plan body lone surrogate in a test id": Case(
            plan_post(b'{"tests": ["a", "b\\udc00"]}'), 422, "tests[1]: must not contain a lone"
        ),
        "results lone surrogate in a test id": Case(
            report(results_json("SURROGATE").replace(b"SURROGATE", b"\\ud800")),
            422,
            "results[1].test: must not contain a lone surrogate",
        ),
        "results json 1000 deep": Case(
            report(b'{"commit": "' + SHA.encode() + b'", "x": ' + DEEP + b', "results": []}'),
            422,
            "nested more than 64",
        ),
        # Numbers out of range.
        "generic additions negative": Case(
            generic(generic_body(changed_files=[{"path": "a", "additions": -1, "deletions": 0}])),
            422,
            "changed_files[0].additions",
        ),
        "generic deletions of 2^31": Case(
            generic(
                generic_body(changed_files=[{"path": "a", "additions": 0, "deletions": 2**31}])
            ),
            422,
            "changed_files[0].deletions",
        ),
        "generic hunk line of 2^31": Case(
            generic(
                generic_body(
                    changed_files=[
                        {
                            "path": "a",
                            "hunks": [
                                {"old_start": 2**31, "old_lines": 1, "new_start": 1, "new_lines": 1}
                            ],
                        }
                    ]
                )
            ),
            422,
            "changed_files[0].hunks[0].old_start",
        ),
        "generic additions of 400 digits": Case(
            generic(
                generic_body(changed_files=[{"path": "a", "additions": 0, "deletions": 0}]).replace(
                    b'"additions": 0', b'"additions": ' + b"9" * 400
                )
            ),
            422,
            "changed_files[0].additions",
        ),
        "results attempt 0": Case(
            report(
                json.dumps(
                    {"commit": SHA, "results": [{"test": "t", "outcome": "passed", "attempt": 0}]}
                ).encode()
            ),
            422,
            "results[0].attempt",
        ),
        "results attempt past 1000": Case(
            report(
                json.dumps(
                    {
                        "commit": SHA,
                        "results": [{"test": "t", "outcome": "passed", "attempt": 1001}],
                    }
                ).encode()
            ),
            422,
            "results[0].attempt",
        ),
        "results negative duration": Case(
            report(
                json.dumps(
                    {"commit": SHA, "results": [{"test": "t", "outcome": "passed", "duration": -1}]}
                ).encode()
            ),
            422,
            "results[0].duration",
        ),
        "results infinite duration": Case(
            report(
                b'{"commit": "'
                + SHA.encode()
                + b'", "results": [{"test": "t", "outcome": "passed", "duration": 1e999}]}'
            ),
            422,
            "results[0].duration",
        ),
        "results plan_id 0": Case(
            report(json.dumps({"commit": SHA, "plan_id": 0, "results": []}).encode()),
            422,
            "plan_id",
        ),
        "runs plan_id negative": Case(
            report(
                junit("b"), content_type="application/xml", params={"commit": SHA, "plan_id": -1}
            ),
            422,
            "plan_id",
        ),
        "runs plan_id 2^63": Case(
            report(
                junit("b"), content_type="application/xml", params={"commit": SHA, "plan_id": 2**63}
            ),
            422,
            "plan_id",
        ),
        "runs plan_id not a number": Case(
            report(
                junit("b"), content_type="application/xml", params={"commit": SHA, "plan_id": "x"}
            ),
            400,
            "query.plan_id",
        ),
        "plan budget infinite": Case(plan_get("mode=time&budget=1e999"), 422, "budget"),
        "plan body budget infinite": Case(
            plan_post(b'{"mode": "time", "budget": 1e999}'), 422, "budget"
        ),
        # Times out of range.
        "generic time before the first": Case(generic(generic_body(time=OLDEST)), 422, "time"),
        "github commit time before the first": Case(
            github(github_push(timestamp=OLDEST)), 422, "commits[0].timestamp"
        ),
        "gitlab commit time before the first": Case(
            gitlab(gitlab_push(timestamp=OLDEST)), 422, "commits[0].timestamp"
        ),
        "generic time not a time": Case(generic(generic_body(time="yesterday")), 400, "time"),
        # Bad content types and encodings.
        "runs text/plain": Case(
            report(junit("b"), content_type="text/plain", params={"commit": SHA}),
            400,
            "Content-Type",
        ),
        "runs multipart": Case(
            report(
                junit("b"), content_type="multipart/form-data; boundary=x", params={"commit": SHA}
            ),
            400,
            "Content-Type",
        ),
        "runs no content type": Case(
            report(junit("b"), content_type="", params={"commit": SHA}), 400, "Content-Type"
        ),
        "runs json sent as xml": Case(
            report(results_json("t"), content_type="application/xml"), 400, "is JSON, not JUnit XML"
        ),
        "runs xml sent as json": Case(
            report(junit("b"), params={"commit": SHA}), 400, "results JSON"
        ),
        "runs brotli encoding": Case(
            with_headers(
                report(junit("b"), content_type="application/xml", params={"commit": SHA}),
                **{"Content-Encoding": "br"},
            ),
            400,
            "Content-Encoding",
        ),
        "runs gzip that is not": Case(
            with_headers(
                report(junit("b"), content_type="application/xml", params={"commit": SHA}),
                **{"Content-Encoding": "gzip"},
            ),
            400,
            "gzip",
        ),
        "github form type with a json body": Case(
            github(github_push(), **{"Content-Type": "application/x-www-form-urlencoded"}),
            400,
            "payload",
        ),
        # Found by the fuzzers (tests/ingest/test_fuzz.py): 500s before.
        "results test id of spaces only": Case(
            report(results_json("   ")), 400, "results[1].test: Value error, a test id needs a name"
        ),
        "github head commit id a list": Case(
            github(
                json.dumps(
                    {
                        **json.loads(github_push()),
                        "commits": [],
                        "head_commit": github_commit(id=[]),
                    }
                ).encode()
            ),
            400,
            "head_commit: every commit must be an object with a string id",
        ),
        # Over-long lists.
        "plan body past 200000 test ids": Case(
            plan_post(json.dumps({"tests": ["t"] * (limits.PLAN_TESTS + 1)}).encode()),
            422,
            f"tests: must have at most {limits.PLAN_TESTS} items",
        ),
        "generic past 64 parents": Case(
            generic(generic_body(parents=[BEFORE] * (limits.PARENTS + 1))), 422, "parents"
        ),
        "generic past 100000 changed files": Case(
            generic(
                generic_body(
                    changed_files=[{"path": f"f{n}"} for n in range(limits.COMMIT_FILES + 1)]
                )
            ),
            422,
            "changed_files",
        ),
        "github past 2048 commits": Case(
            github(
                json.dumps(
                    {
                        **json.loads(github_push()),
                        "commits": [github_commit()] * (limits.PUSH_COMMITS + 1),
                    }
                ).encode()
            ),
            422,
            f"commits: must have at most {limits.PUSH_COMMITS} items",
        ),
        "gitlab past 2048 commits": Case(
            gitlab(
                json.dumps(
                    {
                        **json.loads(gitlab_push()),
                        "commits": [github_commit()] * (limits.PUSH_COMMITS + 1),
                    }
                ).encode()
            ),
            422,
            "commits: must have at most",
        ),
        "github past 100000 modified paths": Case(
            github(github_paths("modified", limits.COMMIT_FILES + 1)),
            422,
            "commits[0].modified: must have at most",
        ),
        "gitlab past 100000 added paths": Case(
            gitlab(
                gitlab_push(
                    added=[f"src/f{number}.py" for number in range(limits.COMMIT_FILES + 1)]
                )
            ),
            422,
            "commits[0].added: must have at most",
        ),
    }
)


def seed(database: Database) -> Keys:
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


@pytest.fixture
def keys(database: Database) -> Keys:
    return seed(database)


def row_counts(database: Database) -> dict[str, int]:
    """Every table's rows, in one statement."""
    tables = Base.metadata.sorted_tables
    query = select(*(select(func.count()).select_from(table).scalar_subquery() for table in tables))
    with database.session() as session:
        counts = session.execute(query).one()
    return {table.name: count for table, count in zip(tables, counts, strict=True)}


@dataclass
class World:
    """One backend's app, client and keys, shared by the refused requests
    (none of which may write anything: a test that finds the seed gone,
    emptied by a test of another module, seeds it again)."""

    database: Database
    client: TestClient
    keys: Keys

    def ready(self) -> dict[str, int]:
        counts = row_counts(self.database)
        if counts["repositories"] != 3:
            empty_all_tables(self.database)
            self.keys = seed(self.database)
            counts = row_counts(self.database)
        return counts


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, redis_server: redis.Redis) -> Iterator[World]:
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    database = Database.from_url(url)
    empty_all_tables(database)
    redis_server.flushdb()
    settings = Settings(database_url=url, broker_url=_worker_redis_url())
    with TestClient(create_app(settings)) as client:
        yield World(database, client, seed(database))
    database.dispose()


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_refused_with_a_4xx_naming_the_field_and_nothing_written(
    world: World, redis_server: redis.Redis, case: Case
) -> None:
    before = world.ready()
    queued = redis_server.llen(QUEUE_NAME)

    response = case.send(world.client, world.keys)

    assert response.status_code == case.status, response.text
    assert 400 <= response.status_code < 500
    assert case.names in response.json()["detail"], response.text
    # The plan API's token lookup stamps last_used_at: an update, no new row.
    assert row_counts(world.database) == before
    assert redis_server.llen(QUEUE_NAME) == queued


def test_the_case_count_covers_every_class() -> None:
    assert len(CASES) >= 200


def test_the_results_bound_is_checked_before_any_result() -> None:
    """More than limits.RESULTS results (a report of 40 MB; checked here on
    the parsed list) are refused whole, naming the field."""
    one = CaseResult(test="t", outcome=Outcome.PASSED)
    with pytest.raises(Unstorable, match=f"testcase: must have at most {limits.RESULTS} items"):
        storable_results([one] * (limits.RESULTS + 1), "testcase")


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
