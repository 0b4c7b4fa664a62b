"""The HTTP client on its own: retries, the time bound, and what its errors say."""

from __future__ import annotations

import time

import pytest
from riskrank_client.api import (
    BadAnswer,
    Client,
    Receipt,
    Refused,
    TimedOut,
    Unreachable,
    describe_connection_error,
)
from riskrank_testing import Answer, Recorded, StartFake, answer_json, free_port

PAYLOAD = {"commit": "abc", "results": []}


def test_upload_returns_the_receipt(fake_riskrank: StartFake) -> None:
    fake = fake_riskrank(answer_json(202, {"status": "queued", "run_id": 3, "tests": 0}))
    client = Client(fake.url + "/", "rr_x", timeout=5)
    assert client.upload_run("acme", "widgets", PAYLOAD) == Receipt(
        status="queued", run_id=3, tests=0
    )
    [request] = fake.requests
    assert request.path == "/api/v1/repos/acme/widgets/runs"
    assert request.json() == PAYLOAD


def test_a_netrc_entry_does_not_replace_the_token(
    fake_riskrank: StartFake,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    fake = fake_riskrank()
    netrc = tmp_path_factory.mktemp("home") / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    Client(fake.url, "rr_x", timeout=5).upload_run("acme", "widgets", PAYLOAD)
    assert fake.requests[0].headers["Authorization"] == "Bearer rr_x"


def test_unreachable_is_retried_within_the_timeout() -> None:
    sleeps: list[float] = []
    client = Client(f"http://127.0.0.1:{free_port()}", "rr_x", timeout=5, sleep=sleeps.append)
    with pytest.raises(
        Unreachable, match=r"cannot reach http://127\.0\.0\.1:\d+ \(Connection refused\)"
    ):
        client.upload_run("acme", "widgets", PAYLOAD)
    assert sleeps == [0.5]


def test_no_retry_when_the_backoff_would_pass_the_timeout(fake_riskrank: StartFake) -> None:
    fake = fake_riskrank(answer_json(503, {"detail": "busy"}))
    client = Client(fake.url, "rr_x", timeout=0.5, backoff=0.5)
    with pytest.raises(Refused, match="HTTP 503: busy") as raised:
        client.upload_run("acme", "widgets", PAYLOAD)
    assert raised.value.status_code == 503
    assert len(fake.requests) == 1


def test_the_whole_call_is_bounded_by_the_timeout(fake_riskrank: StartFake) -> None:
    def respond(_request: Recorded, number: int) -> Answer:
        # First a quick 503, then an answer that never comes in time.
        return answer_json(503, {}) if number == 1 else Answer(delay=30)

    fake = fake_riskrank(respond)
    client = Client(fake.url, "rr_x", timeout=1.5, backoff=0.2)
    started = time.monotonic()
    with pytest.raises(TimedOut, match=r"within 1\.5s"):
        client.upload_run("acme", "widgets", PAYLOAD)
    assert time.monotonic() - started < 1.5 + 1
    assert len(fake.requests) == 2


def test_an_answer_too_large(fake_riskrank: StartFake) -> None:
    fake = fake_riskrank(Answer(status=202, body=b" " * (2 * 1024 * 1024)))
    with pytest.raises(BadAnswer, match="over 1 MiB"):
        Client(fake.url, "rr_x", timeout=5).upload_run("acme", "widgets", PAYLOAD)


def test_names_are_quoted_into_the_path(fake_riskrank: StartFake) -> None:
    fake = fake_riskrank()
    Client(fake.url, "rr_x", timeout=5).upload_run("acme", "wid gets", PAYLOAD)
    assert fake.requests[0].path == "/api/v1/repos/acme/wid%20gets/runs"


def test_describe_connection_error_finds_the_os_reason() -> None:
    inner = ConnectionRefusedError(111, "Connection refused")
    outer = RuntimeError("wrapper")
    outer.__cause__ = inner
    assert describe_connection_error(outer) == "Connection refused"
    assert describe_connection_error(RuntimeError("plain")) == "RuntimeError"
