"""The plan's Markdown summary for a CI job ($GITHUB_STEP_SUMMARY)."""

from __future__ import annotations

from pathlib import Path

import pytest
from riskrank_client.plan import summary, write_summary

PLAN = {
    "commit": "0123456789abcdef0123456789abcdef01234567",
    "status": "ready",
    "model_version": 3,
    "mode": "fraction",
    "selected": 2,
    "total": 12,
    "duration_dropped": 845.0,
    "miss_probability": 0.034,
    "tests": [
        {"test": "tests/a.py::test_x|y", "rank": 1, "probability": 0.5, "selected": True,
         "reason": "Failed 2 of its last 5 runs"},
        {"test": "tests/b.py::test_z", "rank": 2, "probability": 0.25, "selected": True,
         "reason": None},
        {"test": "tests/c.py::test_w", "rank": 3, "probability": 0.01, "selected": False,
         "reason": "Over the budget"},
    ],
}  # fmt: skip


def test_the_summary_says_the_figures_and_the_selected_tests() -> None:
    assert summary(PLAN) == (
        "### riskrank plan for `0123456789ab`\n"
        "\n"
        "**2 of 12 tests selected**, ~14 min of CI time saved, miss risk 3.4% "
        "(fraction, ready, model v3).\n"
        "\n"
        "| # | test | probability | why |\n"
        "|---|---|---|---|\n"
        "| 1 | `tests/a.py::test_x\\|y` | 0.500 | Failed 2 of its last 5 runs |\n"
        "| 2 | `tests/b.py::test_z` | 0.250 |  |\n"
    )


def test_a_whole_suite_says_why() -> None:
    assert summary(PLAN, "full run: every 10th build") == (
        "### riskrank: the whole suite runs\n\n`0123456789ab`: full run: every 10th build.\n"
    )


def test_the_summary_is_appended_and_a_bad_file_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "summary.md"
    target.write_text("before\n")
    write_summary(str(target), "after\n")
    assert target.read_text() == "before\nafter\n"
    write_summary(str(tmp_path / "missing" / "summary.md"), "x")
    assert capsys.readouterr().err == (
        f"riskrank: could not write the summary to {tmp_path / 'missing' / 'summary.md'}: "
        "No such file or directory\n"
    )
