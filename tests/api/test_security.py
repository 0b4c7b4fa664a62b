"""Nobody without the secret or the token learns which repositories exist:
each endpoint class answers an unknown repository exactly as it answers a
registered one it may not touch (same status, same body)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from scheduler.api.app import create_app
from scheduler.config import Settings
from scheduler.db import Database
from scheduler.models import CiEvent, Provider, SuiteRun
from scheduler.services import repos, tokens
from tests.api.security_data import RESULTS, SHA, webhook

SECRET = "the-real-webhook-secret-0123456789"
WRONG = "not-the-webhook-secret-9876543210"
NAMES = {"github": "acme/app", "gitlab": "group/sub/app", "generic": "acme/gen"}


def _register(database: Database, provider: str) -> None:
    with database.session() as session:
        repos.add_repository(
            session, provider=Provider(provider), full_name=NAMES[provider], webhook_secret=SECRET
        )


def _forget(database: Database, provider: str) -> None:
    with database.session() as session:
        repository = repos.find_repository(
            session, provider=Provider(provider), full_name=NAMES[provider]
        )
        assert repository is not None
        session.delete(repository)


def _answer(client: TestClient, provider: str, secret: str) -> tuple[int, object]:
    url, body, headers = webhook(provider, NAMES[provider], secret)
    response = client.post(url, content=body, headers=headers)
    return response.status_code, response.json()


def _events(database: Database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(CiEvent)) or 0


# The API reads a repository's webhook secret at most once per this many
# seconds (Settings.webhook_secret_cache_seconds): a change to the secrets
# is waited out before the deliveries that must see it.
CACHE_SECONDS = 0.2


def _cache_expired() -> None:
    time.sleep(CACHE_SECONDS * 1.5)


@pytest.mark.parametrize("provider", ["github", "gitlab", "generic"])
def test_a_webhook_answers_an_unknown_repository_as_a_wrong_signature(
    settings: Settings, database: Database, provider: str
) -> None:
    cached = settings.model_copy(update={"webhook_secret_cache_seconds": CACHE_SECONDS})
    with TestClient(create_app(cached)) as client:
        _unknown_as_wrong(client, database, provider)


def _unknown_as_wrong(client: TestClient, database: Database, provider: str) -> None:
    _register(database, provider)
    wrong = _answer(client, provider, WRONG)
    assert wrong[0] == 401

    # The same repository without a secret: nothing says it is there.
    with database.session() as session:
        repository = repos.find_repository(
            session, provider=Provider(provider), full_name=NAMES[provider]
        )
        assert repository is not None
        repository.webhook_secret = repository.webhook_secret_hash = None
    _cache_expired()
    assert _answer(client, provider, WRONG) == wrong
    assert _answer(client, provider, SECRET) == wrong

    # Gone: a wrong secret, or the one it had, hears the same.
    _forget(database, provider)
    _cache_expired()
    assert _answer(client, provider, WRONG) == wrong
    assert _answer(client, provider, SECRET) == wrong
    assert _events(database) == 0

    # And registered again, the right secret is still let in.
    _register(database, provider)
    _cache_expired()
    status, body = _answer(client, provider, SECRET)
    assert status == 202, body
    assert _events(database) == 1


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_a_rotated_secret_takes_effect_once_the_cache_expires(
    settings: Settings, database: Database, provider: str
) -> None:
    """`riskrank repo secret` rotates in the database; each API process
    sees it within webhook_secret_cache_seconds, the old one refused then."""
    cached = settings.model_copy(update={"webhook_secret_cache_seconds": CACHE_SECONDS})
    with TestClient(create_app(cached)) as client:
        _register(database, provider)
        assert _answer(client, provider, SECRET)[0] == 202
        with database.session() as session:
            repository = repos.find_repository(
                session, provider=Provider(provider), full_name=NAMES[provider]
            )
            assert repository is not None
            repos.set_webhook_secret(repository, WRONG)  # the new secret
        _cache_expired()
        assert _answer(client, provider, WRONG)[0] == 202
        assert _answer(client, provider, SECRET)[0] == 401
    assert _events(database) == 2


@pytest.mark.parametrize("provider", ["github", "generic"])
@pytest.mark.parametrize(
    "signature", ["sha1=abc", "sha256=", "sha256=zz", "sha256=\u00e9".encode()]
)
def test_a_malformed_signature_is_answered_alike_for_any_repository(
    client: TestClient, database: Database, provider: str, signature: str | bytes
) -> None:
    _register(database, provider)
    header = "X-Hub-Signature-256" if provider == "github" else "X-Riskrank-Signature-256"
    answers = []
    for name in (NAMES[provider], "nobody/nothing"):
        url, body, headers = webhook(provider, name, SECRET)
        sent: dict[str, str | bytes] = {**headers, header: signature}
        response = client.post(url, content=body, headers=sent)
        answers.append((response.status_code, response.json()))
    assert answers[0] == answers[1]
    assert answers[0][0] == 401


def test_a_webhook_for_another_provider_of_the_same_name_is_refused_alike(
    client: TestClient, database: Database
) -> None:
    """A GitHub repository acme/app does not make a generic acme/app exist."""
    _register(database, "github")
    url, body, headers = webhook("generic", "acme/app", SECRET)
    registered_elsewhere = client.post(url, content=body, headers=headers)
    url, body, headers = webhook("generic", "acme/nothing", SECRET)
    nowhere = client.post(url, content=body, headers=headers)
    assert registered_elsewhere.status_code == nowhere.status_code == 401
    assert registered_elsewhere.json() == nowhere.json()


def _token_requests(token: str, name: str) -> dict[str, tuple[str, str, dict[str, object]]]:
    auth = {"Authorization": f"Bearer {token}"}
    return {
        "results": (
            "POST",
            f"/api/v1/repos/{name}/runs",
            {"content": RESULTS, "headers": auth | {"Content-Type": "application/json"}},
        ),
        "plan (GET)": ("GET", f"/api/v1/repos/{name}/plans/{SHA}", {"headers": auth}),
        "plan (POST)": (
            "POST",
            f"/api/v1/repos/{name}/plans/{SHA}",
            {"content": b"{}", "headers": auth | {"Content-Type": "application/json"}},
        ),
    }


def test_a_token_cannot_tell_another_repository_from_an_unknown_one(
    client: TestClient, database: Database
) -> None:
    with database.session() as session:
        mine = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/mine")
        repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/theirs")
        token = tokens.create_token(
            session, repository=mine, scopes=tokens.DEFAULT_SCOPES, name="ci"
        ).token
    requests = _token_requests(token, "acme/theirs")

    def answers() -> dict[str, tuple[int, object]]:
        found = {}
        for what, (method, url, options) in requests.items():
            response = client.request(method, url, **options)  # type: ignore[arg-type]
            found[what] = (response.status_code, response.json())
        return found

    theirs = answers()
    assert {status for status, _ in theirs.values()} == {404}
    with database.session() as session:
        repository = repos.find_repository(
            session, provider=Provider.GITHUB, full_name="acme/theirs"
        )
        session.delete(repository)
    assert answers() == theirs
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(SuiteRun)) == 0


def test_a_token_without_the_scope_is_403_on_its_own_repository_only(
    client: TestClient, database: Database
) -> None:
    """A missing scope may be told: the token proves the repository is its own."""
    with database.session() as session:
        mine = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/mine")
        token = tokens.create_token(
            session, repository=mine, scopes=(tokens.Scope.PLANS_READ,), name="ro"
        ).token
    method, url, options = _token_requests(token, "acme/mine")["results"]
    own = client.request(method, url, **options)  # type: ignore[arg-type]
    assert own.status_code == 403
    method, url, options = _token_requests(token, "acme/nothing")["results"]
    unknown = client.request(method, url, **options)  # type: ignore[arg-type]
    assert unknown.status_code == 404
