"""Per-token rate limits: off by default; when set, the request past the
limit is 429 with Retry-After, counted in Redis (shared by every api process)
or, without one, in each process."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from scheduler.api.app import create_app
from scheduler.api.ratelimit import (
    ProcessCounter,
    RateLimited,
    RateLimiter,
    RedisCounter,
    limiter_for,
)
from scheduler.config import Settings
from scheduler.db import Database
from scheduler.models import Provider
from scheduler.services import repos, tokens
from tests.api.security_data import RESULTS

URL = "/api/v1/repos/acme/app/runs"
# Windows are fixed (aligned to the epoch): a day's window is never
# straddled by a test that uses the real clock.
DAY = 86400


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _hits(limiter: RateLimiter, token_id: int, times: int) -> list[int | None]:
    """None for each request let through, else its Retry-After."""
    found: list[int | None] = []
    for _ in range(times):
        try:
            limiter.hit(token_id)
        except RateLimited as refused:
            found.append(refused.retry_after)
            status = refused.status_code
        else:
            found.append(None)
            status = 200
        assert status == (429 if found[-1] else 200)
    return found


def _counters(kind: str, redis_url: str | None) -> RedisCounter | ProcessCounter:
    return RedisCounter(redis_url) if kind == "redis" and redis_url else ProcessCounter()


@pytest.mark.parametrize("kind", ["process", "redis"])
def test_a_token_past_its_limit_waits_for_the_next_window(
    kind: str, request: pytest.FixtureRequest
) -> None:
    redis_url = request.getfixturevalue("redis_url") if kind == "redis" else None
    clock = Clock(60 * 16_666_666 + 5.0)  # 5 s into a window of 60
    limiter = RateLimiter(_counters(kind, redis_url), limit=3, window=60, clock=clock)
    assert _hits(limiter, 1, 5) == [None, None, None, 55, 55]
    # Another token has its own count.
    assert _hits(limiter, 2, 3) == [None, None, None]
    clock.now += 54.5
    assert _hits(limiter, 1, 1) == [1]  # never 0: a client would retry at once
    clock.now += 1.0  # the next window, 0.5 s in
    assert _hits(limiter, 1, 4) == [None, None, None, 60]


def test_redis_counts_are_shared_by_every_process(redis_url: str) -> None:
    clock = Clock(2_000_000_000.0)
    first = RateLimiter(RedisCounter(redis_url), limit=2, window=DAY, clock=clock)
    second = RateLimiter(RedisCounter(redis_url), limit=2, window=DAY, clock=clock)
    assert _hits(first, 7, 1) == [None]
    assert _hits(second, 7, 1) == [None]
    assert _hits(first, 7, 1) != [None]
    assert _hits(second, 7, 1) != [None]


def test_a_redis_that_fails_lets_requests_through(caplog: pytest.LogCaptureFixture) -> None:
    """Fail open: a limit is a safety net, not a reason to fail CI."""
    limiter = RateLimiter(RedisCounter("redis://127.0.0.1:1/0"), limit=1, window=60)
    assert _hits(limiter, 1, 3) == [None, None, None]
    assert "rate limit not checked" in caplog.text


def test_limits_are_off_by_default_and_shared_through_a_redis_broker(
    tmp_path: Path, redis_url: str
) -> None:
    assert limiter_for(Settings(data_dir=tmp_path)) is None
    local = limiter_for(Settings(data_dir=tmp_path, rate_limit_requests=5))
    assert local is not None
    assert isinstance(local.counter, ProcessCounter)
    shared = limiter_for(Settings(data_dir=tmp_path, broker_url=redis_url, rate_limit_requests=5))
    assert shared is not None
    assert isinstance(shared.counter, RedisCounter)
    chosen = limiter_for(
        Settings(data_dir=tmp_path, rate_limit_requests=5, rate_limit_redis_url=redis_url)
    )
    assert chosen is not None
    assert isinstance(chosen.counter, RedisCounter)


@pytest.fixture
def app_tokens(database: Database) -> dict[str, str]:
    with database.session() as session:
        app = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/app")
        return {
            name: tokens.create_token(
                session, repository=app, scopes=tokens.DEFAULT_SCOPES, name=name
            ).token
            for name in ("first", "second")
        }


def _upload(client: TestClient, token: str) -> tuple[int, str | None]:
    response = client.post(
        URL,
        content=RESULTS,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    return response.status_code, response.headers.get("retry-after")


@contextmanager
def _clients(settings: Settings, count: int) -> Iterator[list[TestClient]]:
    """`count` apps on the same settings, as separate api processes would be."""
    clients = [TestClient(create_app(settings)) for _ in range(count)]
    for client in clients:
        client.__enter__()
    try:
        yield clients
    finally:
        for client in clients:
            client.__exit__(None, None, None)


def test_the_api_answers_429_with_retry_after_across_processes(
    settings: Settings, app_tokens: dict[str, str]
) -> None:
    limited = settings.model_copy(
        update={"rate_limit_requests": 2, "rate_limit_window_seconds": DAY}
    )
    with _clients(limited, 2) as (one, two):
        assert _upload(one, app_tokens["first"])[0] == 202
        assert _upload(two, app_tokens["first"])[0] == 200  # the same report again
        status, retry_after = _upload(one, app_tokens["first"])
        assert status == 429
        assert retry_after is not None
        assert 1 <= int(retry_after) <= DAY
        assert _upload(two, app_tokens["first"])[0] == 429  # counted in Redis, shared
        assert _upload(one, app_tokens["second"])[0] == 200  # another token's own count
        refused = one.post(
            URL, content=RESULTS, headers={"Authorization": f"Bearer {app_tokens['first']}"}
        )
        assert "over the limit of 2 requests per 86400 s" in refused.json()["detail"]
        assert "riskrank_rate_limited_total" in one.get("/metrics").text


def test_without_redis_each_process_counts_its_own(
    settings: Settings, app_tokens: dict[str, str], tmp_path: Path
) -> None:
    local = settings.model_copy(
        update={
            "rate_limit_requests": 1,
            "rate_limit_window_seconds": DAY,
            "broker_url": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        }
    )
    with _clients(local, 2) as (one, two):
        assert _upload(one, app_tokens["first"])[0] == 202
        assert _upload(one, app_tokens["first"])[0] == 429
        # The other process has not seen the token yet (documented: per process).
        assert _upload(two, app_tokens["first"])[0] == 200


def test_a_token_that_is_not_valid_is_401_not_counted(
    settings: Settings, app_tokens: dict[str, str]
) -> None:
    limited = settings.model_copy(
        update={"rate_limit_requests": 1, "rate_limit_window_seconds": DAY}
    )
    with _clients(limited, 1) as (client,):
        for _ in range(3):
            assert _upload(client, "rr_not-a-token")[0] == 401
        assert _upload(client, app_tokens["first"])[0] == 202


def test_the_log_says_nothing_of_a_rate_limited_token(
    settings: Settings, app_tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    limited = settings.model_copy(
        update={"rate_limit_requests": 1, "rate_limit_window_seconds": DAY}
    )
    with _clients(limited, 1) as (client,):
        _upload(client, app_tokens["first"])
        assert _upload(client, app_tokens["first"])[0] == 429
    assert app_tokens["first"] not in caplog.text
    assert tokens.hash_token(app_tokens["first"]) not in caplog.text
