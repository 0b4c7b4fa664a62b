"""Real riskrank processes for the end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from scheduler.db import Database
from scheduler.models import CiEvent, Provider
from tests.conftest import empty_all_tables
from tests.fake_provider import register
from tests.helpers import github_headers, gitlab_headers

# Beside the interpreter running the tests (not resolved: a venv links it).
RISKRANK = str(Path(os.path.abspath(sys.executable)).with_name("riskrank"))


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment without the developer's own RISKRANK_* settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RISKRANK_")}
    env.update(overrides)
    return env


class Process:
    """A riskrank command running in the background, stopped at teardown."""

    def __init__(self, argv: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.log = log
        self._log_file = log.open("wb")
        self.popen = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=self._log_file, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log_file.close()
        return self.popen.returncode


@pytest.fixture
def start(tmp_path: Path) -> Iterator[object]:
    started: list[Process] = []

    def _start(*arguments: str, env: dict[str, str], cwd: Path | None = None) -> Process:
        name = "-".join(arguments[:1]) or "riskrank"
        process = Process(
            [RISKRANK, *arguments],
            env=env,
            cwd=cwd or tmp_path,
            log=tmp_path / f"{name}-{len(started)}.log",
        )
        started.append(process)
        return process

    yield _start
    for process in started:
        process.stop()


Start = Callable[..., Process]  # the `start` fixture


# --- a worker that asks the provider's API (tests/fake_provider.py) ----------


def provider_database(
    postgres_url: str,
    url: str,
    repositories: list[tuple[Provider, str]],
    *,
    commit_status: bool | None = None,
) -> Iterator[Database]:
    """For a fixture: the PostgreSQL database emptied, with `repositories`
    registered to ask the provider at `url` (fake_provider.register)."""
    database = Database.from_url(postgres_url)
    empty_all_tables(database)
    for provider, full_name in repositories:
        register(database, provider, full_name, url, commit_status=commit_status)
    yield database
    database.dispose()


def for_repository(body: bytes, full_name: str) -> tuple[dict[str, Any], bytes]:
    """A GitHub delivery as if from another repository: its document and body."""
    document = json.loads(body)
    document["repository"]["full_name"] = full_name
    return document, json.dumps(document).encode()


def deliver(
    client: TestClient, github: tuple[str, list[bytes]], gitlab: tuple[str, bytes]
) -> list[int]:
    """Signed deliveries to the webhooks, GitHub's (event, bodies) then
    GitLab's (event, body); the ids of the events stored."""
    github_event, bodies = github
    ids = [
        client.post(
            "/webhooks/github", content=body, headers=github_headers(body, event=github_event)
        ).json()["event_id"]
        for body in bodies
    ]
    gitlab_event, body = gitlab
    ids.append(
        client.post(
            "/webhooks/gitlab", content=body, headers=gitlab_headers(event=gitlab_event)
        ).json()["event_id"]
    )
    return ids


def event(database: Database, event_id: int) -> CiEvent:
    """A stored event as it is now, detached from its session."""
    with database.session() as session:
        found = session.get_one(CiEvent, event_id)
        session.expunge(found)
        return found
