"""/healthz, /readyz and /metrics against real and unreachable services."""

import gc
from pathlib import Path

from fastapi.testclient import TestClient

from scheduler.api.app import create_app
from scheduler.config import Settings
from tests.helpers import github_headers, sample


def test_healthz_and_readyz_with_everything_up(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_is_503_when_the_broker_is_down(db_url: str) -> None:
    settings = Settings(
        database_url=db_url, broker_url="redis://127.0.0.1:1/0", publish_timeout_seconds=0.5
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"] != "ok"


def test_readyz_is_503_when_the_database_is_down(redis_url: str) -> None:
    settings = Settings(
        database_url="postgresql+psycopg://127.0.0.1:1/nothing?connect_timeout=1",
        broker_url=redis_url,
    )
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"] == "ok"
    assert ready.json()["checks"]["database"] == "unavailable"
    assert ready.headers["Retry-After"] == "5"


def test_metrics_count_webhooks_by_result(settings: Settings, github_samples: Path) -> None:
    body = sample(github_samples, "push-normal-branch.json")
    with TestClient(create_app(settings)) as client:

        def rejected() -> float:
            for line in client.get("/metrics").text.splitlines():
                if line.startswith(
                    'riskrank_webhooks_received_total{provider="github",result="rejected"}'
                ):
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        before = rejected()
        # Unsigned: refused, and counted.
        headers = github_headers(body)
        del headers["X-Hub-Signature-256"]
        assert client.post("/webhooks/github", content=body, headers=headers).status_code == 400
        response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert "riskrank_webhook_seconds" in response.text
    assert rejected() == before + 1


def test_a_served_app_freezes_its_start_up_heap(settings: Settings) -> None:
    """`riskrank serve`'s processes keep their start-up objects out of the
    garbage collector's full collections (scheduler.api.app.freeze_heap);
    the app of a test, or one embedded elsewhere, does not."""
    gc.unfreeze()
    try:
        with TestClient(create_app(settings)) as client:
            assert client.get("/healthz").status_code == 200
            assert gc.get_freeze_count() == 0
        with TestClient(create_app(settings, served=True)) as client:
            assert client.get("/healthz").status_code == 200
            assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
