"""Test helpers of the riskrank clients (pytest-riskrank, riskrank-client):
a stand-in riskrank (a real HTTP server on a local port, in a thread, that
records what it is sent and answers as told), and the real riskrank server
and worker started as processes on a SQLite file."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

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


def plan_answer(
    tests: list[tuple[str, bool]], *, plan_id: int | None = 17, **fields: Any
) -> dict[str, Any]:
    """A plan as the contract shapes it: `tests` are (id, selected) in run order."""
    answer: dict[str, Any] = {
        "plan_id": plan_id,
        "commit": "a" * 40,
        "status": "ready",
        "model_version": 3,
        "mode": "fraction",
        "budget": 0.5,
        "by": "tests",
        "shard": None,
        "full_run": False,
        "full_run_reason": None,
        "total": len(tests),
        "selected": sum(selected for _test, selected in tests),
        "duration_selected": 1.5,
        "duration_dropped": 125.0,
        "expected_failures_dropped": 0.21,
        "message": None,
        "tests": [
            {
                "test": test,
                "rank": rank,
                "probability": round(0.5 / rank, 4),
                "selected": selected,
                "reason": "Failed 2 of its last 5 runs",
                "duration": 0.5,
                "rule": "model" if selected else "budget",
            }
            for rank, (test, selected) in enumerate(tests, start=1)
        ],
    }
    answer.update(fields)
    return answer


RECEIPT = Answer(status=202, body=b'{"status": "queued", "run_id": 45}')


def routed(plan: Answer, upload: Answer = RECEIPT) -> Responder:
    """Plans from `plan`, uploads from `upload`."""

    def respond(request: Recorded, _number: int) -> Answer:
        return plan if "/plans/" in request.path else upload

    return respond


def plan_requests(fake: FakeRiskrank) -> list[Recorded]:
    return [request for request in fake.requests if "/plans/" in request.path]


def upload_requests(fake: FakeRiskrank) -> list[Recorded]:
    return [request for request in fake.requests if request.path.endswith("/runs")]


def ran_in_order(result: pytest.RunResult) -> list[str]:
    """The node ids of `pytest -v` in the order they ran."""
    found = []
    for line in result.outlines:
        parts = line.split(" ")
        if len(parts) >= 2 and "::" in parts[0] and parts[1] in OUTCOME_WORDS:
            found.append(parts[0])
    return found


OUTCOME_WORDS = {"PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS"}

FOUR_TESTS = """
def test_a():
    pass

def test_b():
    pass

def test_c():
    pass

def test_d():
    assert "d" == "D"
"""


# --- the real riskrank ----------------------------------------------------------

# Beside the interpreter running the tests (not resolved: a venv links it).
RISKRANK = str(Path(os.path.abspath(sys.executable)).with_name("riskrank"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TOKEN_PATTERN = re.compile(r"rr_[A-Za-z0-9_-]+")
WEBHOOK_SECRET = "0123456789abcdef0123"  # noqa: S105  (a test value)
SCOPES = "results:write,plans:read"


@dataclass(frozen=True)
class RealServer:
    """`riskrank serve` with three repositories: acme/widgets and acme/gadgets
    (GitHub; `token` and `other_repository_token` are theirs) and acme/tools
    (generic, `tools_token`); every webhook secret is WEBHOOK_SECRET."""

    url: str
    token: str
    other_repository_token: str
    tools_token: str
    database: Path
    home: Path
    env: dict[str, str]

    def query(self, sql: str, *parameters: object) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.database, timeout=10) as connection:
            return connection.execute(sql, parameters).fetchall()

    def runs(self) -> list[tuple[int, str, bytes, str]]:
        return [
            (row[0], row[1], row[2], row[3])
            for row in self.query("SELECT id, source, report, status FROM test_runs ORDER BY id")
        ]


@dataclass(frozen=True)
class RealWorker:
    server: RealServer
    log: Path


def admin(*arguments: str, env: dict[str, str], cwd: Path) -> str:
    """Run a `riskrank` admin command; its stdout."""
    completed = subprocess.run(  # noqa: S603  (our own executable, no shell)
        [RISKRANK, *arguments],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, (
        f"riskrank {' '.join(arguments)} failed:\n{completed.stdout}\n{completed.stderr}"
    )
    return completed.stdout


def _token(output: str) -> str:
    found = TOKEN_PATTERN.search(output)
    assert found, f"no token in the output of `riskrank token create`:\n{output}"
    return found.group(0)


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/readyz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def _skip_without_server() -> None:
    if not Path(RISKRANK).exists():
        reason = f"the riskrank server is not installed beside the interpreter ({RISKRANK})"
        if IN_CI:
            pytest.fail(f"{reason} (CI must have it)", pytrace=False)
        pytest.skip(reason)


@contextmanager
def _running(
    argv: list[str], *, env: dict[str, str], cwd: Path, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603  (our own executable, no shell)
            argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def start_real_server(home: Path) -> Iterator[RealServer]:
    """The real server on the embedded SQLite default in `home`, with its
    repositories and tokens; skips where the server is not installed."""
    _skip_without_server()
    database = home / "riskrank.db"
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RISKRANK_")}
    env.update(
        RISKRANK_DATABASE_URL=f"sqlite:///{database}",
        RISKRANK_BROKER_URL=f"sqla+sqlite:///{home / 'riskrank-broker.db'}",
        RISKRANK_PORT=str(port),
    )
    admin("db", "upgrade", env=env, cwd=home)
    tokens = []
    for repository, provider in (
        ("acme/widgets", "github"),
        ("acme/gadgets", "github"),
        ("acme/tools", "generic"),
    ):
        admin(
            "repo", "add", repository, "--provider", provider, "--secret", WEBHOOK_SECRET,
            env=env, cwd=home,
        )  # fmt: skip
        created = admin(
            "token", "create", "--repo", repository, "--scope", SCOPES, env=env, cwd=home
        )
        tokens.append(_token(created))
    url = f"http://127.0.0.1:{port}"
    log_path = home / "serve.log"
    with _running([RISKRANK, "serve"], env=env, cwd=home, log_path=log_path) as serve:

        def ready() -> bool:
            if serve.poll() is not None:
                raise AssertionError(
                    f"riskrank serve exited with {serve.returncode}:\n{log_path.read_text()}"
                )
            return _ready(url)

        wait_for(ready, timeout=60, what=f"riskrank serve at {url} to be ready")
        yield RealServer(
            url=url,
            token=tokens[0],
            other_repository_token=tokens[1],
            tools_token=tokens[2],
            database=database,
            home=home,
            env=env,
        )


@contextmanager
def start_real_worker(server: RealServer) -> Iterator[RealWorker]:
    """`riskrank worker` (one process) on the server's database and broker."""
    log_path = server.home / "worker.log"
    argv = [RISKRANK, "worker", "--concurrency", "1"]
    with _running(argv, env=server.env, cwd=server.home, log_path=log_path):
        yield RealWorker(server=server, log=log_path)
