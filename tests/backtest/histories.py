"""Synthetic histories for the backtest's tests, in the JSONL format
`riskrank backtest` reads: one line per build, on main, without changed
files, each test's outcome and a duration of 1 s."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path


def write_builds(path: Path, builds: Iterable[Mapping[str, str]]) -> Path:
    """One line per build, `{test: outcome}`, as builds b0, b1, ... of
    commits 1, 2, ..."""
    lines = [
        {
            "build": f"b{number}",
            "commit": f"{number + 1:040x}",
            "branch": "main",
            "changed_files": [],
            "results": [
                {"test": test, "outcome": outcome, "duration": 1.0}
                for test, outcome in outcomes.items()
            ],
        }
        for number, outcomes in enumerate(builds)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path
