"""Small helpers the tests share: signing deliveries, reading the Redis queue,
waiting with a deadline."""

from __future__ import annotations

import base64
import json
import re
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis

from scheduler.ingest.payload import sign_hmac_sha256
from scheduler.queue import QUEUE_NAME

T = TypeVar("T")

SECRET = "s3cret-for-tests-0123456789"


def github_headers(
    body: bytes,
    *,
    event: str = "push",
    secret: str = SECRET,
    delivery: str | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign_hmac_sha256(secret, body),
        "Content-Type": content_type,
        "User-Agent": "GitHub-Hookshot/test",
    }


def sample(directory: Path, name: str) -> bytes:
    return (directory / name).read_bytes()


def queued_tasks(client: redis.Redis) -> list[tuple[str, list[Any]]]:
    """The (task name, args) of every message waiting in riskrank's queue."""
    tasks = []
    for raw in client.lrange(QUEUE_NAME, 0, -1):
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        tasks.append((message["headers"]["task"], body[0]))
    return tasks


def wait_for(
    check: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.1, what: str = ""
) -> T:
    """Poll `check` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def gitlab_headers(
    *,
    event: str = "Push Hook",
    token: str | None = SECRET,
    idempotency_key: str | None = None,
    event_uuid: str | None = None,
) -> dict[str, str]:
    """What GitLab sends (../shared/samples/HEADERS.md); a fresh
    Idempotency-Key unless one or an event UUID is given."""
    headers = {
        "X-Gitlab-Event": event,
        "Content-Type": "application/json",
        "User-Agent": "GitLab/17.6.0",
    }
    if token is not None:
        headers["X-Gitlab-Token"] = token
    if idempotency_key is None and event_uuid is None:
        idempotency_key = str(uuid.uuid4())
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    if event_uuid is not None:
        headers["X-Gitlab-Event-UUID"] = event_uuid
    return headers


def generic_headers(
    body: bytes, *, secret: str = SECRET, delivery: str | None = None
) -> dict[str, str]:
    """A generic event's headers: its signature, and a delivery id if given."""
    headers = {
        "X-Riskrank-Signature-256": sign_hmac_sha256(secret, body),
        "Content-Type": "application/json",
    }
    if delivery is not None:
        headers["X-Riskrank-Delivery"] = delivery
    return headers


def metric_value(metrics_text: str, series: str) -> float:
    """The value of one series (`name{labels}`) in a /metrics answer; 0 if absent."""
    for line in metrics_text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


METRIC_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric_key(series: str) -> str:
    """`name{labels}` with its labels in name order (the exposition's order
    is the metric's, or sorted when processes' samples are merged)."""
    name, _, labels = series.partition("{")
    pairs = sorted(METRIC_LABEL.findall(labels))
    return name + ("{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}" if pairs else "")


def metric_samples(text: str) -> dict[str, float]:
    """Every sample of an exposition, by `metric_key()`."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            found[metric_key(series)] = float(value)
    return found
