"""Real riskrank processes for the benchmarks that measure the whole path
(API, broker, worker): `riskrank serve` and `riskrank worker` started as
child processes on a given database and broker, stopped at the end whatever
happens; and what the benchmarks send them (signed GitHub pushes, JUnit
reports)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx

from scheduler.ingest.payload import sign_hmac_sha256

RISKRANK = str(Path(os.path.abspath(sys.executable)).with_name("riskrank"))
SECRET = "benchmark-webhook-secret-0123456789"  # noqa: S105 (a throwaway database)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Stack:
    url: str  # the API's base URL
    env: dict[str, str]
    pid: int  # `riskrank serve` (its uvicorn processes are its children)
    worker_pid: int | None = None  # `riskrank worker` (its slots are its children)


@contextmanager
def running(
    database_url: str,
    broker_url: str = "",
    *,
    api_workers: int = 1,
    worker_concurrency: int | None = 2,
    log_dir: Path | None = None,
) -> Iterator[Stack]:
    """`riskrank serve` (with `api_workers` uvicorn processes) and, unless
    `worker_concurrency` is None, `riskrank worker`; an empty broker URL is
    the embedded SQLite broker in a temporary data directory, as under
    `riskrank up`."""
    with tempfile.TemporaryDirectory(prefix="riskrank-bench-") as tmp:
        logs = log_dir or Path(tmp)
        port = free_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith("RISKRANK_")}
        env.update(
            RISKRANK_DATABASE_URL=database_url,
            RISKRANK_DATA_DIR=tmp,
            RISKRANK_LOG_LEVEL="WARNING",
            RISKRANK_PORT=str(port),
        )
        if broker_url:
            env["RISKRANK_BROKER_URL"] = broker_url
        children: list[subprocess.Popen[bytes]] = []
        try:
            children.append(_start(["serve", "--workers", str(api_workers)], env, logs / "api.log"))
            if worker_concurrency is not None:
                children.append(
                    _start(
                        ["worker", "--concurrency", str(worker_concurrency)],
                        env,
                        logs / "worker.log",
                    )
                )
            base = f"http://127.0.0.1:{port}"
            _wait_healthy(base, children)
            worker = children[1].pid if len(children) > 1 else None
            yield Stack(base, env, children[0].pid, worker)
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children:
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


def _start(arguments: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(  # noqa: S603 (our own command)
            [RISKRANK, *arguments], env=env, stdout=output, stderr=subprocess.STDOUT
        )


def _wait_healthy(base: str, children: list[subprocess.Popen[bytes]]) -> None:
    # Four API processes importing everything on a loaded 2-core machine
    # took over a minute to answer.
    deadline = time.monotonic() + 240
    while True:
        for child in children:
            if child.poll() is not None:
                raise RuntimeError(f"{child.args} exited with {child.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.2)


def push(full_name: str, number: int, *, files: int = 3) -> tuple[bytes, dict[str, str]]:
    """A signed GitHub push of one commit touching `files` files: body, headers."""
    sha = uuid.uuid5(uuid.NAMESPACE_URL, f"{full_name}/{number}").hex.ljust(40, "0")
    before = uuid.uuid5(uuid.NAMESPACE_URL, f"{full_name}/{number - 1}").hex.ljust(40, "0")
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "before": before,
            "after": sha,
            "repository": {"full_name": full_name},
            "commits": [
                {
                    "id": sha,
                    "message": f"change {number}",
                    "timestamp": "2026-12-01T12:00:00Z",
                    "author": {"name": "Bench Mark"},
                    "added": [],
                    "removed": [],
                    "modified": [f"src/pkg{(number + k) % 40}/module{k}.py" for k in range(files)],
                }
            ],
            "head_commit": {"id": sha},
        }
    ).encode()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign_hmac_sha256(SECRET, body),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bench",
    }
    return body, headers


def junit_report(tests: int, *, failing_every: int = 97, offset: int = 0) -> bytes:
    """A JUnit XML report of `tests` distinct tests in 50 packages, one in
    `failing_every` failing, made by hand (no shared data needed)."""
    parts = [f'<?xml version="1.0"?>\n<testsuite name="bench" tests="{tests}">\n']
    for index in range(offset, offset + tests):
        module = f"tests/pkg{index % 50}/test_mod{index // 200}"
        head = (
            f'<testcase classname="{module.replace("/", ".")}.TestCase{index % 9}" '
            f'file="{module}.py" name="test_{index}" time="0.{index % 1000:03d}"'
        )
        if index % failing_every == 0:
            parts.append(f'{head}><failure message="boom">assert 1 == 2</failure></testcase>\n')
        else:
            parts.append(f"{head}/>\n")
    parts.append("</testsuite>\n")
    return "".join(parts).encode()
