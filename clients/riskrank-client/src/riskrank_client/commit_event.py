"""The generic commit event's body (see riskrank's README, "Any other CI:
the generic event"), read from git in the checkout, and its signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from riskrank_client import ci

SIGNATURE_HEADER = "X-Riskrank-Signature-256"
DELIVERY_HEADER = "X-Riskrank-Delivery"

# git's status letters, as the event names them.
STATUSES = {"A": "added", "M": "modified", "D": "removed", "R": "renamed", "C": "copied"}
# Field separator of `git log --format`: a byte no message holds.
_SEPARATOR = "\x1f"
# riskrank's bounds of a file's hunks (scheduler/ingest/hunks.py): the
# first MAX_HUNKS are sent, a longer symbol is left out (riskrank refuses
# the event otherwise).
MAX_HUNKS = 100
MAX_SYMBOL = 200


@dataclass(frozen=True)
class Hunk:
    """One hunk of `git diff -U0` and the symbol git's function-name guess
    shows for it, where it shows one."""

    old_start: int
    old_lines: int
    new_start: int
    new_lines: int
    symbol: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "old_start": self.old_start,
            "old_lines": self.old_lines,
            "new_start": self.new_start,
            "new_lines": self.new_lines,
            "symbol": self.symbol,
        }


@dataclass(frozen=True)
class ChangedFile:
    path: str
    status: str
    old_path: str | None = None
    additions: int | None = None
    deletions: int | None = None
    hunks: tuple[Hunk, ...] | None = None  # None: unknown (not "no hunk")

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": self.path, "status": self.status}
        if self.old_path is not None:
            entry["old_path"] = self.old_path
        if self.additions is not None and self.deletions is not None:
            entry["additions"] = self.additions
            entry["deletions"] = self.deletions
        if self.hunks is not None:
            entry["hunks"] = [hunk.to_json() for hunk in self.hunks[:MAX_HUNKS]]
        return entry


@dataclass(frozen=True)
class CommitFacts:
    """What git says about one commit; `notes` lists what it could not say."""

    sha: str
    parents: tuple[str, ...] = ()
    files: tuple[ChangedFile, ...] | None = None  # None: unknown (not "no file")
    message: str | None = None
    author: str | None = None
    time: str | None = None
    notes: tuple[str, ...] = field(default=())


def parse_name_status(output: str) -> list[tuple[str, str, str | None]]:
    """`git diff --name-status -z` as (status letter, path, old path)."""
    fields = output.split("\0")
    changes: list[tuple[str, str, str | None]] = []
    position = 0
    while position < len(fields) and fields[position]:
        letter = fields[position][:1]
        if letter in ("R", "C"):
            old, new = fields[position + 1], fields[position + 2]
            changes.append((letter, new, old))
            position += 3
        else:
            changes.append((letter, fields[position + 1], None))
            position += 2
    return changes


def parse_numstat(output: str) -> dict[str, tuple[int, int] | None]:
    """`git diff --numstat -z` as path -> (additions, deletions); None for a
    binary file (git counts no lines)."""
    fields = output.split("\0")
    counts: dict[str, tuple[int, int] | None] = {}
    position = 0
    while position < len(fields) and fields[position]:
        added, deleted, path = fields[position].split("\t", 2)
        position += 1
        if not path:  # a rename or copy: old and new path follow
            path = fields[position + 1]
            position += 2
        counts[path] = (int(added), int(deleted)) if added != "-" and deleted != "-" else None
    return counts


_HUNK_HEADER = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)")
# The name in git's function-name guess (the context after the second @@):
# a definition's keyword and its name (Python, JavaScript, Go, Rust, Ruby,
# Kotlin, Swift, ...), else the name before the first parenthesis of a
# C-like declaration (`static int parse(char *s)`, `public void testBasic()`).
_DEFINITION = re.compile(
    r"\b(?:def|class|function|func|fn|struct|interface|enum|trait|module|object|record)"
    r"\s+(?:\([^)]*\)\s*)?\*?([A-Za-z_$][\w$]*)"
)
_CALL_LIKE = re.compile(r"([A-Za-z_$][\w$]*)\s*\(")


def symbol_of(context: str) -> str | None:
    """The function or class git's hunk header shows: `def windowed(iterable,
    n):` -> windowed, `class Foo(Bar):` -> Foo; None when it shows none."""
    context = context.strip()
    found = _DEFINITION.search(context)
    if found is None and "=" not in context.split("(", 1)[0]:
        # No assignment before the parenthesis: a declaration, not `x = f(1)`.
        found = _CALL_LIKE.search(context)
    if found is None:
        return None
    name = found.group(1)
    return name if len(name) <= MAX_SYMBOL else None


def _unquoted(path: str) -> str:
    """A path as git writes it in a diff header: C-quoted when it holds
    special characters (octal escapes are UTF-8 bytes)."""
    if not path.startswith('"'):
        return path
    raw = path[1:-1].encode("utf-8", "surrogateescape")
    decoded = re.sub(
        rb"\\([0-7]{3}|.)",
        lambda m: bytes([int(m.group(1), 8)])
        if len(m.group(1)) == 3
        else {b"n": b"\n", b"t": b"\t", b"a": b"\a", b"b": b"\b", b"f": b"\f",
              b"r": b"\r", b"v": b"\v"}.get(m.group(1), m.group(1)),
        raw,
    )  # fmt: skip
    return decoded.decode("utf-8", "surrogateescape")


def _header_path(line: str) -> str | None:
    """The path of a `--- a/...` or `+++ b/...` line; None for /dev/null.
    git ends the line with a tab when the name holds a space (a name that
    ends with a tab itself comes quoted)."""
    name = line[4:].removesuffix("\t")
    if name == "/dev/null":
        return None
    name = _unquoted(name)
    return name[2:] if name[:2] in ("a/", "b/") else name


def parse_hunks(output: str) -> dict[str, tuple[Hunk, ...]]:
    """`git diff -U0 --no-color` as path -> its hunks (the new path; the old
    one for a removed file). A file the diff shows without hunks (a rename
    alone, a binary file) is not listed."""
    hunks: dict[str, list[Hunk]] = {}
    old_path: str | None = None
    path: str | None = None
    # Lines end with "\n" only: str.splitlines would also cut a changed line
    # at a form feed or a vertical tab, making a header of its rest.
    for line in output.split("\n"):
        if line.startswith("diff "):
            old_path = path = None
        elif line.startswith("--- ") and path is None:
            old_path = _header_path(line)
        elif line.startswith("+++ ") and path is None:
            path = _header_path(line) or old_path
        elif line.startswith("@@ ") and path is not None:
            header = _HUNK_HEADER.match(line)
            if header is None:
                continue
            old_start, old_lines, new_start, new_lines, context = header.groups()
            hunks.setdefault(path, []).append(
                Hunk(
                    int(old_start),
                    int(old_lines) if old_lines is not None else 1,
                    int(new_start),
                    int(new_lines) if new_lines is not None else 1,
                    symbol_of(context),
                )
            )
    return {name: tuple(found) for name, found in hunks.items()}


def changed_files(
    sha: str, parent: str | None, cwd: Path, *, git: ci.GitRunner | None = None
) -> tuple[ChangedFile, ...] | None:
    """The commit's changes against its first parent (everything, for a root
    commit); None when git cannot tell (the parent is not fetched)."""
    read = git or ci.git_output
    base = [parent, sha] if parent is not None else ["--root", sha]
    common = ["diff-tree", "-r", "-z", "-M", "-C", "--no-commit-id"]
    statuses = read([*common, "--name-status", *base], cwd)
    if statuses is None:
        return None
    numbers = read([*common, "--numstat", *base], cwd)
    counts = parse_numstat(numbers) if numbers is not None else {}
    # The patch with git's own function-name guesses (`git diff -U0` of the
    # commit against its parent); core.quotePath off: only names with
    # control characters or quotes come quoted.
    patch = read(["-c", "core.quotePath=false", *common, "-p", "-U0", "--no-color", *base], cwd)
    hunks = parse_hunks(patch) if patch is not None else None
    files = []
    for letter, path, old_path in parse_name_status(statuses):
        lines = counts.get(path)
        files.append(
            ChangedFile(
                path=path,
                status=STATUSES.get(letter, "modified"),
                old_path=old_path,
                additions=lines[0] if lines is not None else None,
                deletions=lines[1] if lines is not None else None,
                # A binary file has no line, so no hunk to tell.
                hunks=hunks.get(path, ()) if hunks is not None and lines is not None else None,
            )
        )
    return tuple(files)


def commit_facts(sha: str, cwd: Path, *, git: ci.GitRunner | None = None) -> CommitFacts:
    """Parents, changed files, message, author and time of `sha` (a full id)."""
    read = git or ci.git_output
    notes: list[str] = []
    # The commit object names its parents even in a shallow clone, where
    # `git log` shows none past the boundary.
    raw = read(["cat-file", "commit", sha], cwd) or ""
    header = raw.split("\n\n", 1)[0]
    parents = tuple(
        line.split(" ", 1)[1] for line in header.splitlines() if line.startswith("parent ")
    )
    shown = read(["show", "-s", f"--format=%an{_SEPARATOR}%aI{_SEPARATOR}%B", sha], cwd)
    author = time = message = None
    if shown is not None and shown.count(_SEPARATOR) >= 2:
        author, time, message = shown.split(_SEPARATOR, 2)
        message = message.strip() or None
    files = changed_files(sha, parents[0] if parents else None, cwd, git=git)
    if files is None:
        notes.append(
            "no changed files: git has not got the parent commit here "
            "(a shallow clone? fetch with a depth of 2 or more)"
        )
    return CommitFacts(
        sha=sha,
        parents=parents,
        files=files,
        message=message,
        author=ci.clean(author),
        time=ci.clean(time),
        notes=tuple(notes),
    )


def event_body(repository: str, facts: CommitFacts, *, branch: str | None) -> bytes:
    body: dict[str, Any] = {"repository": repository, "commit": facts.sha}
    if branch is not None:
        body["branch"] = branch
    if facts.parents:
        body["parents"] = list(facts.parents)
    if facts.files is not None:
        body["changed_files"] = [change.to_json() for change in facts.files]
    for key, value in (("message", facts.message), ("author", facts.author), ("time", facts.time)):
        if value is not None:
            body[key] = value
    return json.dumps(body).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    """The X-Riskrank-Signature-256 value: sha256=<hex HMAC-SHA256 of the body>."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
