"""A stand-in riskrank for the plugin's tests: a real HTTP server on a local
port, in a thread, that records what it is sent and answers as told."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 202
    body: bytes = b'{"status": "queued", "run_id": 45}'
    content_type: str = "application/json"
    delay: float = 0.0  # seconds before answering
    headers: dict[str, str] = field(default_factory=dict)
    hang_up: bool = False  # close the connection without answering


def answer_json(status: int, data: Any, **options: Any) -> Answer:
    return Answer(status=status, body=json.dumps(data).encode(), **options)


Responder = Callable[[Recorded, int], Answer]


class FakeRiskrank:
    """Answers every request with `respond(request, number)` (number counts from 1)."""

    def __init__(self, respond: Responder | Answer | None = None) -> None:
        if respond is None:
            respond = Answer()
        if isinstance(respond, Answer):
            fixed = respond
            respond = lambda _request, _number: fixed  # noqa: E731
        self.respond: Responder = respond
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        # Set at close: a slow answer stops waiting instead of holding the test up.
        self.released = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                recorded = Recorded(
                    method=self.command,
                    path=self.path,
                    headers=dict(self.headers.items()),
                    body=self.rfile.read(length),
                )
                with fake._lock:
                    fake.requests.append(recorded)
                    number = len(fake.requests)
                answer = fake.respond(recorded, number)
                if answer.delay:
                    fake.released.wait(answer.delay)
                if answer.hang_up:
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that gave up (the plugin's timeout) breaks the pipe: expected.
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


StartFake = Callable[..., FakeRiskrank]


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def riskrank_lines(result: pytest.RunResult) -> list[str]:
    return [
        line
        for line in [*result.outlines, *result.errlines]
        if line.lstrip().startswith("riskrank:")
    ]


def one_riskrank_line(result: pytest.RunResult) -> str:
    lines = riskrank_lines(result)
    assert len(lines) == 1, "\n".join([*result.outlines, *result.errlines])
    assert "INTERNALERROR" not in result.stdout.str()
    return lines[0]


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll `check` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


PASSING_SUITE = """
def test_one():
    pass

def test_two():
    assert 1 + 1 == 2
"""

FAILING_SUITE = """
def test_one():
    pass

def test_two():
    assert 1 + 1 == 3
"""
