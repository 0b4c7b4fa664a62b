"""The plugin against the real riskrank server, started here as processes
on the embedded SQLite default: what it stores is read back from the file.

The server is the `riskrank` executable beside the interpreter. Where it is
not installed (someone installed only the plugin) these tests are skipped,
except under CI (CI=true), which must test everything."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from riskrank_testing import free_port, one_riskrank_line, wait_for

# Beside the interpreter running the tests (not resolved: a venv links it).
RISKRANK = str(Path(os.path.abspath(sys.executable)).with_name("riskrank"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TOKEN_PATTERN = re.compile(r"rr_[A-Za-z0-9_-]+")
WEBHOOK_SECRET = "0123456789abcdef0123"  # noqa: S105  (a test value, as the brief fixes it)
COMMIT = "9fceb02d0ae598e95dc970b74767f19372d61af8"

pytestmark = pytest.mark.slow

SUITE = """
import pytest


def test_passes():
    pass


def test_fails():
    assert "riskrank" == "riskrunk"


def test_skipped():
    pytest.skip("not here")


@pytest.mark.xfail(reason="known")
def test_expected_failure():
    raise ValueError("known")
"""


@dataclass(frozen=True)
class RealServer:
    url: str
    token: str
    other_repository_token: str
    database: Path

    def runs(self) -> list[tuple[int, str, bytes, str]]:
        with sqlite3.connect(self.database, timeout=10) as connection:
            return connection.execute(
                "SELECT id, source, report, status FROM test_runs ORDER BY id"
            ).fetchall()


def _admin(*arguments: str, env: dict[str, str], cwd: Path) -> str:
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


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    if not Path(RISKRANK).exists():
        reason = f"the riskrank server is not installed beside the interpreter ({RISKRANK})"
        if IN_CI:
            pytest.fail(f"{reason} (CI must have it)", pytrace=False)
        pytest.skip(reason)

    home = tmp_path_factory.mktemp("riskrank-server")
    database = home / "riskrank.db"
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RISKRANK_")}
    env.update(
        RISKRANK_DATABASE_URL=f"sqlite:///{database}",
        RISKRANK_BROKER_URL=f"sqla+sqlite:///{home / 'riskrank-broker.db'}",
        RISKRANK_PORT=str(port),
    )
    _admin("db", "upgrade", env=env, cwd=home)
    _admin("repo", "add", "acme/widgets", "--secret", WEBHOOK_SECRET, env=env, cwd=home)
    _admin("repo", "add", "acme/gadgets", "--secret", WEBHOOK_SECRET, env=env, cwd=home)
    token = _token(
        _admin(
            "token",
            "create",
            "--repo",
            "acme/widgets",
            "--scope",
            "results:write",
            env=env,
            cwd=home,
        )
    )
    other = _token(
        _admin(
            "token",
            "create",
            "--repo",
            "acme/gadgets",
            "--scope",
            "results:write",
            env=env,
            cwd=home,
        )
    )

    log_path = home / "serve.log"
    with log_path.open("wb") as log:
        serve = subprocess.Popen(  # noqa: S603  (our own executable, no shell)
            [RISKRANK, "serve"], env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            if serve.poll() is not None:
                raise AssertionError(
                    f"riskrank serve exited with {serve.returncode}:\n{log_path.read_text()}"
                )
            return _ready(url)

        wait_for(ready, timeout=60, what=f"riskrank serve at {url} to be ready")
        yield RealServer(url=url, token=token, other_repository_token=other, database=database)
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()


def _configure(monkeypatch: pytest.MonkeyPatch, server: RealServer, **overrides: str) -> None:
    values = {
        "RISKRANK_URL": server.url,
        "RISKRANK_TOKEN": server.token,
        "RISKRANK_REPO": "acme/widgets",
        "RISKRANK_COMMIT": COMMIT,
        "RISKRANK_BRANCH": "main",
        "RISKRANK_RUN_KEY": "build-1",
    }
    values.update(overrides)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_the_server_stores_the_run(
    pytester: pytest.Pytester, real_server: RealServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(monkeypatch, real_server)
    before = real_server.runs()
    pytester.makepyfile(test_suite=SUITE)

    # A fresh interpreter, as in CI: the plugin comes in through its entry point.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    assert result.ret == 1
    line = one_riskrank_line(result)
    uploaded = re.fullmatch(r"riskrank: uploaded 4 results \(run (\d+)\)", line)
    assert uploaded, line
    runs = real_server.runs()
    assert len(runs) == len(before) + 1
    run_id, source, report, status = runs[-1]
    assert run_id == int(uploaded.group(1))
    assert source == "pytest"
    assert status in {"pending", "ingested"}
    body = json.loads(report)
    assert (body["commit"], body["branch"], body["run_key"], body["source"]) == (
        COMMIT,
        "main",
        "build-1",
        "pytest",
    )
    assert [
        (entry["test"], entry["outcome"], entry["attempt"], entry["file"])
        for entry in body["results"]
    ] == [
        ("test_suite.py::test_passes", "passed", 1, "test_suite.py"),
        ("test_suite.py::test_fails", "failed", 1, "test_suite.py"),
        ("test_suite.py::test_skipped", "skipped", 1, "test_suite.py"),
        ("test_suite.py::test_expected_failure", "skipped", 1, "test_suite.py"),
    ]
    messages = {entry["test"]: entry["message"] for entry in body["results"]}
    assert messages["test_suite.py::test_passes"] is None
    assert "riskrunk" in messages["test_suite.py::test_fails"]
    assert messages["test_suite.py::test_skipped"] == "Skipped: not here"


@pytest.mark.parametrize(
    ("overrides", "answer"),
    [
        ({"RISKRANK_TOKEN": "rr_not-a-real-token"}, "HTTP 401"),
        ({"RISKRANK_REPO": "acme/gadgets"}, "HTTP 403"),
    ],
    ids=["invalid-token", "token-of-another-repository"],
)
def test_a_refusal_of_the_server_leaves_the_run_alone(
    pytester: pytest.Pytester,
    real_server: RealServer,
    monkeypatch: pytest.MonkeyPatch,
    overrides: dict[str, str],
    answer: str,
) -> None:
    _configure(monkeypatch, real_server, **overrides)
    before = real_server.runs()
    pytester.makepyfile(test_suite=SUITE)

    result = pytester.runpytest("-p", "no:cacheprovider")

    assert result.ret == 1
    line = one_riskrank_line(result)
    assert line.startswith(f"riskrank: {real_server.url} answered {answer}: "), line
    assert line.endswith("; 4 results not uploaded")
    assert real_server.runs() == before


def test_an_unknown_repository(
    pytester: pytest.Pytester, real_server: RealServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(monkeypatch, real_server, RISKRANK_REPO="acme/nothing")
    pytester.makepyfile(test_suite="def test_one():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == 0
    line = one_riskrank_line(result)
    assert line == (
        f"riskrank: {real_server.url} answered HTTP 404: "
        "repository acme/nothing is not registered; 1 result not uploaded"
    )
