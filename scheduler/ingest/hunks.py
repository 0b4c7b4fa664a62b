"""A changed file's hunks (`git diff -U0`) and the symbols they changed:
their bounds, their stored JSON form, and a build's changed symbols (pure
functions). Hunks are optional everywhere: None is "not known", which is
not "no hunk"."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from scheduler import limits

# Bounds of what one changed file keeps, so a generated file or a vendored
# tree cannot blow up a row (changed_files.hunks) or a commit event: the
# first MAX_HUNKS hunks of a file (the mutation history's largest file has
# 35), and symbols of at most MAX_SYMBOL characters (its longest has 53).
# Storage keeps the first MAX_HUNKS and drops a longer symbol (a cut name
# would name something else); the generic event refuses either (422, as
# every value past a bound).
MAX_HUNKS = limits.HUNKS
MAX_SYMBOL = limits.SYMBOL_CHARS

# What changed_files.hunks holds: one object per hunk, as history JSONL has it.
StoredHunks: TypeAlias = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Hunk:
    """One hunk of a file's zero-context diff (`git diff -U0`), and the
    function or class enclosing its first new line, where known."""

    old_start: int
    old_lines: int
    new_start: int
    new_lines: int
    symbol: str | None = None


def bounded(hunks: Sequence[Hunk]) -> tuple[Hunk, ...]:
    """The hunks a file keeps: the first MAX_HUNKS, a symbol longer than
    MAX_SYMBOL (or empty) dropped."""
    return tuple(
        hunk
        if hunk.symbol is None or 0 < len(hunk.symbol) <= MAX_SYMBOL
        else Hunk(hunk.old_start, hunk.old_lines, hunk.new_start, hunk.new_lines)
        for hunk in hunks[:MAX_HUNKS]
    )


def to_json(hunks: Sequence[Hunk] | None) -> list[dict[str, Any]] | None:
    """The stored (and exported) form of a file's hunks, bounded; None stays
    None."""
    if hunks is None:
        return None
    return [
        {
            "old_start": hunk.old_start,
            "old_lines": hunk.old_lines,
            "new_start": hunk.new_start,
            "new_lines": hunk.new_lines,
            "symbol": hunk.symbol,
        }
        for hunk in bounded(hunks)
    ]


def from_json(stored: StoredHunks | None) -> tuple[Hunk, ...] | None:
    """Hunks read back from their stored form."""
    if stored is None:
        return None
    return tuple(
        Hunk(
            int(entry["old_start"]),
            int(entry["old_lines"]),
            int(entry["new_start"]),
            int(entry["new_lines"]),
            entry.get("symbol"),
        )
        for entry in stored
    )


def changed_symbols(files: Iterable[Sequence[Hunk] | None]) -> tuple[str, ...]:
    """The distinct symbols the hunks of a change's files name, sorted; ()
    when no file says any (or no file has hunks)."""
    return tuple(sorted({hunk.symbol for hunks in files if hunks for hunk in hunks if hunk.symbol}))


def stored_symbols(files: Iterable[StoredHunks | None]) -> tuple[str, ...]:
    """changed_symbols of files' stored hunks (changed_files.hunks)."""
    return changed_symbols(map(from_json, files))
