"""Secrets, tokens and their hashes never appear in a log line, an answer
(body or header) or /metrics, for good requests and bad ones alike."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from scheduler.api.app import create_app
from scheduler.config import Settings
from scheduler.db import Database
from scheduler.models import Provider
from scheduler.services import repos, tokens
from tests.api.security_data import RESULTS, SHA, webhook

SECRETS = {
    "github": "github-secret-AAAA-0123456789",
    "gitlab": "gitlab-secret-BBBB-0123456789",
    "generic": "generic-secret-CCCC-0123456789",
}
NAMES = {"github": "acme/app", "gitlab": "group/app", "generic": "acme/gen"}
WRONG_SECRET = "wrong-secret-DDDD-0123456789"
WRONG_TOKEN = "rr_wrong-token-EEEE-0123456789abcdefghijklmnopq"


@pytest.fixture
def limited_client(settings: Settings) -> Iterator[TestClient]:
    """The app with rate limits on, so that 429s are driven too."""
    # A day's window: the test never straddles two (windows are fixed).
    limited = settings.model_copy(
        update={"rate_limit_requests": 6, "rate_limit_window_seconds": 86400}
    )
    with TestClient(create_app(limited)) as client:
        yield client


def test_no_secret_token_or_hash_is_logged_answered_or_exported(
    limited_client: TestClient, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    client = limited_client
    with database.session() as session:
        registered = {
            provider: repos.add_repository(
                session,
                provider=Provider(provider),
                full_name=NAMES[provider],
                webhook_secret=secret,
            )
            for provider, secret in SECRETS.items()
        }
        other = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/other")
        good = tokens.create_token(
            session, repository=registered["github"], scopes=tokens.DEFAULT_SCOPES, name="ci"
        ).token
        read_only = tokens.create_token(
            session,
            repository=registered["github"],
            scopes=(tokens.Scope.PLANS_READ,),
            name="ro",
        ).token
        foreign = tokens.create_token(
            session, repository=other, scopes=tokens.DEFAULT_SCOPES, name="ci"
        ).token
        gitlab_hash = registered["gitlab"].webhook_secret_hash
    assert gitlab_hash
    forbidden = {
        *SECRETS.values(),
        WRONG_SECRET,
        WRONG_TOKEN,
        good,
        read_only,
        foreign,
        gitlab_hash,
        gitlab_hash.rpartition("$")[2],
        *(tokens.hash_token(t) for t in (good, read_only, foreign, WRONG_TOKEN)),
    }

    caplog.set_level(logging.DEBUG)
    # Even SQL logging, were an operator to turn it on, shows no values.
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    answers = []
    for provider, secret in SECRETS.items():
        for name in (NAMES[provider], "nobody/nothing"):
            for used in (secret, WRONG_SECRET):
                url, body, headers = webhook(provider, name, used)
                answers.append(client.post(url, content=body, headers=headers))
    for token in (good, read_only, foreign, WRONG_TOKEN, f"{good} trailing", good.upper()):
        for name in ("acme/app", "acme/other", "nobody/nothing"):
            auth = {"Authorization": f"Bearer {token}"}
            answers.append(
                client.post(
                    f"/api/v1/repos/{name}/runs",
                    content=RESULTS,
                    headers=auth | {"Content-Type": "application/json"},
                )
            )
            answers.append(client.get(f"/api/v1/repos/{name}/plans/{SHA}", headers=auth))
    answers.append(
        client.get(f"/api/v1/repos/acme/app/plans/{SHA}", headers={"Authorization": good})
    )
    # Past the good token's limit of 6.
    answers.append(
        client.get(
            f"/api/v1/repos/acme/app/plans/{SHA}", headers={"Authorization": f"Bearer {good}"}
        )
    )
    statuses = {response.status_code for response in answers}
    # Every kind of answer was driven: accepted, refused, unknown, over the limit.
    assert {200, 202, 401, 403, 404, 429} <= statuses, statuses

    exported = client.get("/metrics").text
    document = client.get("/openapi.json").text
    seen = "\n".join(
        [
            caplog.text,
            exported,
            document,
            *(response.text for response in answers),
            *(f"{k}: {v}" for response in answers for k, v in response.headers.items()),
        ]
    )
    assert "refused a github delivery" in caplog.text  # the log was captured
    assert "SELECT" in caplog.text  # and so was the SQL
    leaked = sorted(secret for secret in forbidden if secret in seen)
    assert leaked == []


def test_a_failed_statement_does_not_carry_its_values(database: Database) -> None:
    """An error's text (which ends in a log or a traceback) names the SQL,
    never the values bound to it."""
    value = "a-token-hash-FFFF-0123456789"
    with pytest.raises(SQLAlchemyError) as failure, database.session() as session:
        session.execute(text("SELECT * FROM no_such_table WHERE x = :value"), {"value": value})
    assert "no_such_table" in str(failure.value)
    assert value not in str(failure.value)
