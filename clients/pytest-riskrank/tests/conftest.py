"""The plugin's tests run pytest inside pytest (pytester) against a stand-in
riskrank on a local port, and against the real server where it is installed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_riskrank.config import ENVIRONMENT_VARIABLES
from riskrank_testing import Answer, FakeRiskrank, Responder, StartFake

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def ci_free_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Neither the developer's nor the CI system's own variables may leak into
    the runs under test (this suite itself may run on GitHub Actions)."""
    for name in ENVIRONMENT_VARIABLES:
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
