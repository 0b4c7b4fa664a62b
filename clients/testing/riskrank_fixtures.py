"""Fixtures both client suites use (pytest-riskrank's and riskrank-client's):
a clean environment, stand-in riskrank servers, and the real riskrank server
and worker. Loaded with `pytest_plugins = ["riskrank_fixtures"]`; this
directory is on the suites' pythonpath (their pyproject's pytest settings)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from riskrank_client.ci import CI_VARIABLES
from riskrank_testing import (
    Answer,
    FakeRiskrank,
    RealServer,
    RealWorker,
    Responder,
    StartFake,
    start_real_server,
    start_real_worker,
)


@pytest.fixture(autouse=True)
def ci_free_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Neither the developer's nor the CI system's own variables may leak into
    the runs under test (these suites themselves may run on GitHub Actions)."""
    for name in [
        *CI_VARIABLES,
        "GITHUB_STEP_SUMMARY",  # the job's summary page: written to when set
        *(name for name in os.environ if name.startswith("RISKRANK_")),
    ]:
        monkeypatch.delenv(name, raising=False)
    # git must not find a repository above the temporary directories.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path_factory.getbasetemp()))


@pytest.fixture
def fake_riskrank() -> Iterator[StartFake]:
    """Start stand-in servers; each is stopped at teardown."""
    started: list[FakeRiskrank] = []

    def start(respond: Responder | Answer | None = None) -> FakeRiskrank:
        fake = FakeRiskrank(respond)
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.close()


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """`riskrank serve` on a SQLite file of its own (skipped where the server
    is not installed, but under CI)."""
    with start_real_server(tmp_path_factory.mktemp("riskrank-server")) as server:
        yield server


@pytest.fixture(scope="module")
def real_worker(real_server: RealServer) -> Iterator[RealWorker]:
    """A `riskrank worker` beside the real server (same database and broker)."""
    with start_real_worker(real_server) as worker:
        yield worker
