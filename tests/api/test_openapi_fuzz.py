"""schemathesis against the app's own OpenAPI document, in process, on a
real SQLite database with the app's real authentication: every operation
gets a fixed, derandomized budget of generated requests, valid and not,
and every answer must be no 5xx and inside the document (a declared status,
its content type, its schema, its headers).

So that the generated requests reach past the first check, most of them
are made to name the registered repository (acme/app for the token API,
which the token is for) and the webhooks are signed with its secret; the
rest go as generated (unknown repositories, wrong signatures)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from scheduler import migrate
from scheduler.api.app import create_app
from scheduler.config import Settings
from scheduler.db import Database
from scheduler.ingest import generic, github, gitlab
from scheduler.ingest.payload import sign_hmac_sha256
from scheduler.models import Provider
from scheduler.services import repos, tokens
from tests.conftest import _worker_redis_url
from tests.helpers import SECRET

SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


class World:
    """The app, and the token that may act on acme/app."""

    def __init__(self, app: FastAPI, token: str) -> None:
        self.app = app
        self.token = token


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_server: redis.Redis) -> Iterator[World]:
    """An app on a SQLite file of its own (migrated), with acme/app (GitHub),
    group/app (GitLab) and acme/gen (generic) registered."""
    path: Path = tmp_path_factory.mktemp("openapi-fuzz") / "riskrank.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    redis_server.flushdb()
    database = Database.from_url(url)
    with database.session() as session:
        app_repo = repos.add_repository(
            session, provider=Provider.GITHUB, full_name="acme/app", webhook_secret=SECRET
        )
        repos.add_repository(
            session, provider=Provider.GITLAB, full_name="group/app", webhook_secret=SECRET
        )
        repos.add_repository(
            session, provider=Provider.GENERIC, full_name="acme/gen", webhook_secret=SECRET
        )
        token = tokens.create_token(
            session,
            repository=app_repo,
            scopes=(tokens.Scope.RESULTS_WRITE, tokens.Scope.PLANS_READ),
            name="fuzz",
        ).token
    database.dispose()
    app = create_app(Settings(database_url=url, broker_url=_worker_redis_url()))
    yield World(app, token)
    redis_server.flushdb()


# The document is the app's whatever its settings: read from an app that
# never touches its database; the cases are sent to the fixture's app.
# Valid and invalid requests alike; the coverage phase (every boundary case
# the document defines, hundreds an operation) is left out for CI's time.
CONFIG = SchemathesisConfig.from_dict(
    {"phases": {"coverage": {"enabled": False}}, "generation": {"mode": "all"}}
)
schema = schemathesis.openapi.from_asgi(
    "/openapi.json",
    create_app(
        Settings(
            database_url="sqlite:///unused-by-the-document.db",
            broker_url="redis://127.0.0.1:6379/0",
        )
    ),
    config=CONFIG,
)


def _chosen(case: schemathesis.Case, one_in: int) -> bool:
    """A derandomized choice, two cases in three (one_in=3) alike: by the
    generated data, so that the same examples are chosen on every run."""
    seed = repr((case.path_parameters, case.query, case.headers, case.body))
    return zlib.crc32(seed.encode("utf-8", "surrogatepass")) % one_in != 0


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


def _sign(case: schemathesis.Case) -> None:
    """Make a webhook case name its registered repository and carry the
    right signature (or token) over the bytes it sends."""
    headers = case.headers if case.headers is not None else {}
    case.headers = headers
    body = case.body
    if isinstance(body, NotSet):
        return  # a case without a body: its signature is as generated
    if case.path == "/webhooks/gitlab":
        if isinstance(body, dict) and isinstance(body.get("project"), dict):
            body["project"]["path_with_namespace"] = "group/app"
        headers[gitlab.TOKEN_HEADER] = SECRET
        return
    if case.path == "/webhooks/github":
        target = body
        if case.media_type == "application/x-www-form-urlencoded" and isinstance(body, dict):
            target = None
        if isinstance(target, dict) and isinstance(target.get("repository"), dict):
            target["repository"]["full_name"] = "acme/app"
        header = github.SIGNATURE_HEADER
    else:
        if isinstance(body, dict):
            body["repository"] = "acme/gen"
        header = generic.SIGNATURE_HEADER
    if isinstance(body, bytes):
        raw = body
    elif case.media_type == "application/x-www-form-urlencoded" and isinstance(body, dict):
        raw = urlencode({key: str(value) for key, value in body.items()}).encode()
    else:
        raw = _json(body)
    case.body = raw
    headers[header] = sign_hmac_sha256(SECRET, raw)


def _aim(case: schemathesis.Case, token: str) -> None:
    """The token API's cases: most name acme/app (and a real commit id)."""
    parameters = case.path_parameters
    if parameters is None or "owner" not in parameters:
        return
    if _chosen(case, 3):
        parameters.update(owner="acme", name="app")
        if "sha" in parameters and _chosen(case, 2):
            parameters["sha"] = SHA


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_5xx_and_nothing_outside_the_document(case: schemathesis.Case, world: World) -> None:
    if case.path.startswith("/webhooks/") and _chosen(case, 3):
        _sign(case)
    _aim(case, world.token)
    headers = {"Authorization": f"Bearer {world.token}"} if "{owner}" in case.path else None
    case.call_and_validate(headers=headers, checks=CHECKS, app=world.app)
