"""GitLab's signed webhooks (a signing token, `webhook-signature`) beside
its secret token: what is accepted, and the clear refusals."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from scheduler.db import Database
from scheduler.ingest.payload import sign_standard_webhook, standard_signature_matches
from scheduler.models import CiEvent, Provider
from scheduler.services import provider_access, repos
from scheduler.services.provider_access import AccessError
from tests.helpers import SECRET, gitlab_headers, sample

URL = "/webhooks/gitlab"
SIGNING = "whsec_" + base64.b64encode(bytes(range(32))).decode()
PROJECT = "mike/diaspora"


@pytest.fixture
def body(gitlab_samples: Path) -> bytes:
    return sample(gitlab_samples, "push-hook.json")


def register(database: Database, *, signing: str | None) -> None:
    with database.session() as session:
        repository = repos.add_repository(
            session, provider=Provider.GITLAB, full_name=PROJECT, webhook_secret=SECRET
        )
        if signing is not None:
            provider_access.update_access(repository, signing_token=signing)


def signed(
    body: bytes,
    *,
    token: str | None = None,
    signing: str = SIGNING,
    webhook_id: str = "msg_1",
    at: int | None = None,
) -> dict[str, str]:
    timestamp = str(int(time.time()) if at is None else at)
    headers = gitlab_headers(token=token, idempotency_key=webhook_id)
    headers["webhook-id"] = webhook_id
    headers["webhook-timestamp"] = timestamp
    headers["webhook-signature"] = sign_standard_webhook(
        signing, webhook_id=webhook_id, timestamp=timestamp, body=body
    )
    return headers


def stored(database: Database) -> int:
    with database.session() as session:
        return len(session.scalars(select(CiEvent.id)).all())


def test_the_signature_is_the_standard_webhooks_one() -> None:
    # The Standard Webhooks specification's own example (its README).
    token = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert standard_signature_matches(
        token,
        webhook_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp="1614265330",
        body=body,
        header_value="v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    )


def test_a_signed_delivery_is_accepted_with_or_without_the_secret_token(
    client: TestClient, database: Database, body: bytes
) -> None:
    register(database, signing=SIGNING)
    response = client.post(URL, content=body, headers=signed(body, webhook_id="msg_1"))
    assert (response.status_code, response.json()["status"]) == (202, "queued")
    response = client.post(URL, content=body, headers=signed(body, token=SECRET, webhook_id="m2"))
    assert (response.status_code, response.json()["status"]) == (202, "queued")
    # Several signatures (a rotation): one that verifies is enough.
    headers = signed(body, webhook_id="msg_3")
    headers["webhook-signature"] = "v1,bm90IGl0 " + headers["webhook-signature"]
    assert client.post(URL, content=body, headers=headers).status_code == 202
    assert stored(database) == 3


MISMATCH = (
    "{header} does not match: the repository is not registered here, has no webhook "
    "secret, or its secret is not the one used"
)


@pytest.mark.parametrize(
    ("change", "status", "detail"),
    [
        pytest.param(
            {"signing": "whsec_" + base64.b64encode(b"x" * 32).decode()},
            401,
            MISMATCH.format(header="webhook-signature"),
            id="another-key",
        ),
        pytest.param(
            {"token": "not the secret"},
            401,
            MISMATCH.format(header="X-Gitlab-Token"),
            id="wrong-token-beside",
        ),
        pytest.param(
            {"at": int(time.time()) - 3600},
            401,
            "webhook-timestamp is more than 300 s from this server's clock: a delivery is "
            "accepted only when it is fresh (check the server's clock)",
            id="an-hour-old",
        ),
        pytest.param(
            {"drop": "webhook-id"}, 400, "webhook-id header is required", id="no-webhook-id"
        ),
        pytest.param(
            {"drop": "webhook-timestamp"},
            400,
            "webhook-timestamp header is required",
            id="no-timestamp",
        ),
        pytest.param(
            {"drop": "webhook-signature"},
            401,
            "X-Gitlab-Token header is required: set the GitLab webhook's secret token to "
            "the repository's webhook secret (or its signing token: `riskrank repo api "
            "--signing-token`, sent as webhook-signature)",
            id="nothing-to-verify",
        ),
        pytest.param(
            {"drop": "webhook-signature", "token": SECRET},
            401,
            MISMATCH.format(header="webhook-signature"),
            id="the-token-alone-once-a-signing-token-is-set",
        ),
        pytest.param(
            {"timestamp": "yesterday"},
            400,
            "webhook-timestamp must be a Unix time in seconds",
            id="timestamp-not-a-number",
        ),
    ],
)
def test_refusals_are_clear_and_store_nothing(
    client: TestClient,
    database: Database,
    body: bytes,
    change: dict[str, object],
    status: int,
    detail: str,
) -> None:
    register(database, signing=SIGNING)
    headers = signed(
        body,
        token=change.get("token"),  # type: ignore[arg-type]
        signing=str(change.get("signing", SIGNING)),
        at=change.get("at"),  # type: ignore[arg-type]
    )
    if "drop" in change:
        headers.pop(str(change["drop"]))
    if "timestamp" in change:
        headers["webhook-timestamp"] = str(change["timestamp"])
    response = client.post(URL, content=body, headers=headers)
    assert (response.status_code, response.json()["detail"]) == (status, detail)
    assert stored(database) == 0


def test_without_a_signing_token_the_secret_token_decides(
    client: TestClient, database: Database, body: bytes
) -> None:
    register(database, signing=None)
    # A signature riskrank has no key for is not looked at.
    response = client.post(URL, content=body, headers=signed(body, token=SECRET))
    assert response.status_code == 202
    response = client.post(URL, content=body, headers=signed(body, webhook_id="msg_2"))
    assert response.status_code == 401
    assert response.json()["detail"] == MISMATCH.format(header="X-Gitlab-Token")


@pytest.mark.parametrize(
    "token", ["whsec_", "whsec_not*base64", "abc", "whsec_" + base64.b64encode(b"short").decode()]
)
def test_a_signing_token_riskrank_cannot_use_is_refused(database: Database, token: str) -> None:
    with database.session() as session:
        repository = repos.add_repository(
            session, provider=Provider.GITLAB, full_name=PROJECT, webhook_secret=SECRET
        )
        with pytest.raises(AccessError, match="whsec_ followed by the base64 of its key"):
            provider_access.update_access(repository, signing_token=token)
        github = repos.add_repository(
            session, provider=Provider.GITHUB, full_name="octo/repo", webhook_secret=SECRET
        )
        with pytest.raises(AccessError, match="signing tokens are GitLab's"):
            provider_access.update_access(github, signing_token=SIGNING)
