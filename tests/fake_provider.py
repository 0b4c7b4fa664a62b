"""A local HTTP server the tests start, answering like GitHub's and GitLab's
REST APIs: each path has a script of answers (status, headers, body, delay),
given in order, the last one again once the script is spent. Every request
(GET, or POST with its body) is recorded with its headers. And the
repositories that riskrank pulls from it (`register`)."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from scheduler.db import Database
from scheduler.models import Provider
from scheduler.services import provider_access, repos
from tests.helpers import SECRET

# The provider API token of the repositories `register` makes: a test checks
# it is sent to the provider and never logged or shown.
TOKEN = "ghp_FakeProviderToken0123456789abcdef"


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the answer (a slow provider)


def json_answer(document: Any, status: int = 200, **headers: str) -> Answer:
    return Answer(
        status, json.dumps(document).encode(), {"Content-Type": "application/json", **headers}
    )


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # with its query
    headers: dict[str, str]
    body: bytes = b""


class FakeProvider:
    """The server and its scripts; `url` is its base URL."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Answer]] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.do_GET(self.rfile.read(length) if length else b"")

            def do_GET(self, body: bytes = b"") -> None:
                answer = provider._next(self.command, self.path, dict(self.headers.items()), body)
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value.replace("{base}", provider.url))
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the slow answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _next(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        with self._lock:
            self.seen.append(Seen(method, path, headers, body))
            script = self.scripts.get(path) or self.scripts.get(urlsplit(path).path)
            if not script:
                return json_answer({"message": "Not Found"}, 404)
            return script.pop(0) if len(script) > 1 else script[0]

    def on(self, path: str, *answers: Answer) -> None:
        """Answer `path` (with its query, or without to answer any query)."""
        with self._lock:
            self.scripts[path] = list(answers)

    def requests_to(self, path: str) -> list[Seen]:
        return [seen for seen in self.seen if urlsplit(seen.path).path == path]

    def start(self) -> FakeProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve() -> Iterator[FakeProvider]:
    """For a fixture: a started server, stopped afterwards."""
    server = FakeProvider().start()
    try:
        yield server
    finally:
        server.stop()


def register(
    database: Database,
    provider: Provider,
    full_name: str,
    url: str | None,
    *,
    commit_status: bool | None = None,
) -> int:
    """A repository (webhook secret SECRET) whose results and changed files
    riskrank asks of the provider's API at `url` with TOKEN (None: no access
    set, CI uploads its results); its id."""
    with database.session() as session:
        repository = repos.add_repository(
            session, provider=provider, full_name=full_name, webhook_secret=SECRET
        )
        if url is not None:
            provider_access.update_access(
                repository, token=TOKEN, api_url=url, commit_status=commit_status
            )
        session.flush()
        return repository.id
