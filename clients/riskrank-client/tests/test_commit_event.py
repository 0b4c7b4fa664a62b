"""The hunks `event` sends: `git diff -U0` of a commit against its parent in a
real repository, each hunk with the symbol of git's function-name guess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from riskrank_client.commit_event import (
    MAX_HUNKS,
    MAX_SYMBOL,
    ChangedFile,
    Hunk,
    changed_files,
    parse_hunks,
    symbol_of,
)
from running import client, git

MODULE = """\
import os


def windowed(iterable, n):
    window = []
    return window


class Chunker(Base):
    size = 3

    def chunk(self, items):
        return items


def first(items):
    return items[0]
"""

# The same module, changed: an import added, a line in windowed, one in
# Chunker's method, a definition added after first.
CHANGED = """\
import os
import sys


def windowed(iterable, n):
    window = [None] * n
    return window


class Chunker(Base):
    size = 3

    def chunk(self, items):
        return list(items)


def first(items):
    return items[0]


def last(items):
    return items[-1]
"""


def commit_all(directory: Path, message: str) -> str:
    git(directory, "add", "-A")
    git(directory, "commit", "-q", "-m", message)
    return git(directory, "rev-parse", "HEAD")


@pytest.fixture
def repository(tmp_path: Path) -> tuple[Path, str, str]:
    """A module, then a commit changing it, adding a file with a name git
    quotes and removing one. (directory, first sha, second sha)"""
    directory = tmp_path / "repo"
    directory.mkdir()
    git(directory, "init", "-q", "-b", "main")
    (directory / "more.py").write_text(MODULE)
    (directory / "gone.py").write_text("def gone():\n    pass\n")
    first = commit_all(directory, "First")
    (directory / "more.py").write_text(CHANGED)
    (directory / 'déjà "vu".py').write_text("X = 1\n")
    (directory / "gone.py").unlink()
    return directory, first, commit_all(directory, "Second")


def test_a_commits_hunks_and_their_symbols(repository: tuple[Path, str, str]) -> None:
    directory, first, second = repository
    files = changed_files(second, first, directory)
    assert files is not None
    assert {change.path: change.hunks for change in files} == {
        'déjà "vu".py': (Hunk(0, 0, 1, 1),),
        "gone.py": (Hunk(1, 2, 0, 0),),
        "more.py": (
            Hunk(1, 0, 2, 1),  # before any definition: git shows no name
            Hunk(5, 1, 6, 1, "windowed"),
            # git's default guess is the last line that starts at column 0:
            # the class, not its method.
            Hunk(13, 1, 14, 1, "Chunker"),
            Hunk(17, 0, 19, 4, "first"),
        ),
    }
    # The root commit: every file added, one hunk each, no name before line 1.
    root = changed_files(first, None, directory)
    assert root is not None
    assert {change.path: change.hunks for change in root} == {
        "gone.py": (Hunk(0, 0, 1, 2),),
        "more.py": (Hunk(0, 0, 1, 17),),
    }


def test_a_python_diff_driver_names_the_method(repository: tuple[Path, str, str]) -> None:
    """With `*.py diff=python` (.gitattributes) git's guess is the
    innermost def, indented or not."""
    directory, _first, _second = repository
    (directory / ".gitattributes").write_text("*.py diff=python\n")
    parent = commit_all(directory, "Attributes")
    (directory / "more.py").write_text(CHANGED.replace("list(items)", "tuple(items)"))
    head = commit_all(directory, "Tuple")
    [change] = changed_files(head, parent, directory) or ()
    assert change.hunks == (Hunk(14, 1, 14, 1, "chunk"),)


def test_event_sends_the_hunks(repository: tuple[Path, str, str]) -> None:
    directory, first, second = repository
    result = client("event", "--dry-run", "--repo", "acme/more", "--commit", second, cwd=directory)
    assert (result.returncode, result.stderr) == (0, "")
    sent = {change["path"]: change for change in json.loads(result.stdout)["changed_files"]}
    assert sent["more.py"]["hunks"][1] == {
        "old_start": 5,
        "old_lines": 1,
        "new_start": 6,
        "new_lines": 1,
        "symbol": "windowed",
    }
    assert [len(change["hunks"]) for change in sent.values()] == [1, 1, 4]
    assert json.loads(result.stdout)["parents"] == [first]


@pytest.mark.parametrize(
    ("context", "symbol"),
    [
        ("def windowed(iterable, n):", "windowed"),
        ("class Foo(Bar):", "Foo"),
        ("    async def fetch(self):", "fetch"),
        ("class WindowedTests(TestCase):", "WindowedTests"),
        ("public void testBasic() {", "testBasic"),
        ("static int parse_header(const char *s)", "parse_header"),
        ("func (r *Reader) Read(p []byte) (n int, err error) {", "Read"),
        ("function render(props) {", "render"),
        ("pub fn new() -> Self {", "new"),
        ("", None),
        ("import os", None),
        ("RETRIES = compute(3)", None),  # an assignment, not a definition
        ("def " + "f" * (MAX_SYMBOL + 1) + "():", None),  # over riskrank's bound
    ],
)
def test_the_symbol_of_a_hunk_header(context: str, symbol: str | None) -> None:
    assert symbol_of(context) == symbol


def test_hunk_headers_without_counts_and_a_removed_file() -> None:
    diff = (
        "diff --git a/a.py b/a.py\n"
        "index 1..2 100644\n"
        "--- a/a.py\n"
        "+++ b/a.py\n"
        "@@ -3 +3 @@ def a():\n"
        "--- a removed line that looks like a header\n"
        "+++ an added one\n"
        "@@ -9,0 +10,2 @@\n"
        "+x\n"
        "+y\n"
        "diff --git a/b.py b/b.py\n"
        "deleted file mode 100644\n"
        "--- a/b.py\n"
        "+++ /dev/null\n"
        "@@ -1,2 +0,0 @@ class B:\n"
        "-1\n"
        "-2\n"
    )
    assert parse_hunks(diff) == {
        "a.py": (Hunk(3, 1, 3, 1, "a"), Hunk(9, 0, 10, 2)),
        "b.py": (Hunk(1, 2, 0, 0, "B"),),
    }


def test_at_most_max_hunks_are_sent() -> None:
    hunks = tuple(Hunk(n, 1, n, 1, f"f{n}") for n in range(MAX_HUNKS + 1))
    sent = ChangedFile("a.py", "modified", hunks=hunks).to_json()["hunks"]
    assert (len(sent), sent[-1]["symbol"]) == (100, "f99")
    assert "hunks" not in ChangedFile("a.bin", "modified").to_json()
    assert ChangedFile("a.py", "renamed", hunks=()).to_json()["hunks"] == []
