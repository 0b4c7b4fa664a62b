"""Running `riskrank-client` as CI runs it: a fresh interpreter, in a
directory of the test's choosing, with the environment the test gives it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

JUNIT_REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites>
  <testsuite name="unit" tests="3" failures="1">
    <testcase classname="tests.test_io" file="tests/test_io.py" name="test_eof" time="0.12">
      <failure message="boom">AssertionError</failure>
    </testcase>
    <testcase classname="tests.test_io" file="tests/test_io.py" name="test_open" time="0.03"/>
    <testcase classname="tests.test_cli" file="tests/test_cli.py" name="test_help" time="0.50"/>
  </testsuite>
</testsuites>
"""
REPORT_TESTS = [
    "tests/test_io.py::test_eof",
    "tests/test_io.py::test_open",
    "tests/test_cli.py::test_help",
]


def client(
    *arguments: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`python -m riskrank_client ARGUMENTS` with os.environ (cleaned of CI
    variables by the autouse fixture) plus `env`."""
    return subprocess.run(  # noqa: S603  (our own module, no shell)
        [sys.executable, "-m", "riskrank_client", *arguments],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def git(cwd: Path, *arguments: str) -> str:
    completed = subprocess.run(  # noqa: S603  (fixed argv, no shell)
        ["git", *arguments],  # noqa: S607  (git from PATH)
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "Ada Lovelace",
            "GIT_AUTHOR_EMAIL": "ada@example.com",
            "GIT_COMMITTER_NAME": "Ada Lovelace",
            "GIT_COMMITTER_EMAIL": "ada@example.com",
            "GIT_AUTHOR_DATE": "2024-05-01T12:00:00Z",
            "GIT_COMMITTER_DATE": "2024-05-01T12:00:00Z",
        },
    )
    return completed.stdout.strip()


def checkout(directory: Path) -> tuple[str, str]:
    """A git repository with two commits; the second adds, modifies, removes,
    renames a file and changes a binary one. (first sha, second sha)"""
    directory.mkdir(parents=True, exist_ok=True)
    git(directory, "init", "-q", "-b", "main")
    (directory / "src").mkdir()
    (directory / "src" / "reader.py").write_text("def read():\n    return 1\n")
    (directory / "src" / "out.py").write_text("".join(f"line {n}\n" for n in range(20)))
    (directory / "docs.md").write_text("old docs\n")
    (directory / "logo.bin").write_bytes(b"\x00\x01\x02")
    git(directory, "add", "-A")
    git(directory, "commit", "-q", "-m", "First")
    first = git(directory, "rev-parse", "HEAD")
    (directory / "src" / "reader.py").write_text("def read():\n    return 2\n\n# more\n")
    git(directory, "mv", "src/out.py", "src/writer.py")
    git(directory, "rm", "-q", "docs.md")
    (directory / "src" / "new.py").write_text("NEW = True\n")
    (directory / "logo.bin").write_bytes(b"\x00\x01\x03\x04")
    git(directory, "add", "-A")
    git(directory, "commit", "-q", "-m", "Read the header once\n\nAnd say why.")
    return first, git(directory, "rev-parse", "HEAD")
