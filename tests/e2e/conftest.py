"""Real riskrank processes for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

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
