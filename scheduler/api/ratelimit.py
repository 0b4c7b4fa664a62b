"""Optional per-token rate limits on the token-authenticated API.

At most `limit` requests per token in each fixed window of `window` seconds
(windows aligned to the epoch); the request past the limit is refused with
429 and `Retry-After` (the seconds left in the window). Fixed windows, not a
token bucket: the same rule works in one process and, with a single atomic
INCR, in Redis; the price is that a client can fit up to 2 x limit requests
around a window's edge, which a limit meant as a safety net can afford.

Shared through Redis when one is configured (every api process then counts
against the same windows); otherwise each process counts on its own, so N api
processes let a token make up to N x limit requests. A Redis that fails does
not fail CI: the request goes through and the failure is logged (fail open)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

from scheduler import metrics
from scheduler.config import Settings
from scheduler.errors import ClientError

logger = logging.getLogger(__name__)

KEY_PREFIX = "riskrank:ratelimit:"

Clock = Callable[[], float]


class RateLimited(ClientError):
    status_code = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Counter(Protocol):
    def count(self, key: str, window: int, index: int) -> int | None:
        """Count one request of `key` in window number `index`, and return
        the window's count so far (None: unknown, let it through)."""


class ProcessCounter:
    """Counts in this process's memory (thread-safe: handlers run in a pool)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}

    def count(self, key: str, window: int, index: int) -> int | None:
        with self._lock:
            start, count = self._windows.get(key, (index, 0))
            count = count + 1 if start == index else 1
            self._windows[key] = (index, count)
            if len(self._windows) > 10_000:
                # Tokens seen in earlier windows only: nothing left to count.
                self._windows = {k: v for k, v in self._windows.items() if v[0] == index}
            return count


class RedisCounter:
    """Counts in Redis, shared by every process that uses the same server."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)

    def count(self, key: str, window: int, index: int) -> int | None:
        name = f"{KEY_PREFIX}{key}:{index}"
        try:
            with self._client.pipeline() as pipe:
                pipe.incr(name)
                pipe.expire(name, window + 1)
                count, _ = pipe.execute()
        except redis.RedisError as error:
            logger.warning("rate limit not checked, Redis failed: %s", type(error).__name__)
            return None
        return int(count)


class RateLimiter:
    def __init__(self, counter: Counter, *, limit: int, window: int, clock: Clock = time.time):
        self.counter = counter
        self.limit = limit
        self.window = window
        self._clock = clock

    def hit(self, token_id: int) -> None:
        """Count a request of the token; RateLimited (429) past the limit."""
        now = self._clock()
        index = int(now // self.window)
        count = self.counter.count(f"token:{token_id}", self.window, index)
        if count is None or count <= self.limit:
            return
        metrics.RATE_LIMITED.inc()
        retry_after = max(1, math.ceil((index + 1) * self.window - now))
        raise RateLimited(
            f"over the limit of {self.limit} requests per {self.window} s for this token; "
            f"retry after {retry_after} s",
            retry_after=retry_after,
        )


def redis_url_for(settings: Settings) -> str | None:
    """The Redis the limits are shared through: the configured one, else the
    broker when it is Redis, else none (per process)."""
    if settings.rate_limit_redis_url:
        return settings.rate_limit_redis_url
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return settings.broker_url
    return None


def limiter_for(settings: Settings) -> RateLimiter | None:
    """The application's limiter, or None when limits are off (the default)."""
    if not settings.rate_limit_requests:
        return None
    url = redis_url_for(settings)
    counter: Counter = RedisCounter(url) if url else ProcessCounter()
    return RateLimiter(
        counter, limit=settings.rate_limit_requests, window=settings.rate_limit_window_seconds
    )
