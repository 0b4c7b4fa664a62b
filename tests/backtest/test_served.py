"""What served the riskrank rows of a backtest, said by `riskrank backtest`
(the installed command) in the terminal, the JSON and the HTML report: the
heuristic when every training is refused, a model's version and its builds
once one is promoted. Two histories written by hand, each shaped so that the
registry's decisions are known in advance."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.e2e.conftest import clean_env
from tests.test_cli_outcomes import one_line, riskrank

TESTS = 20
START = datetime(2024, 1, 1, tzinfo=UTC)


def write_history(
    path: Path, builds: int, fails: Callable[[int, int], bool], *, first: int = 0
) -> Path:
    """`builds` builds of TESTS tests of a second each, numbered from
    `first`; `fails(test, build)` (both from 0) says which fail."""
    lines = [
        {
            "build": f"b{build + 1}",
            "commit": f"{build + 1:040x}",
            "time": (START + timedelta(hours=build)).isoformat(),
            "branch": "main",
            "changed_files": [],
            "results": [
                {
                    "test": f"t{test:02d}",
                    "outcome": "failed" if fails(test, build) else "passed",
                    "duration": 1.0,
                }
                for test in range(TESTS)
            ],
        }
        for build in range(first, first + builds)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def backtest(cwd: Path, history: str, *options: str) -> tuple[str, dict[str, Any], str]:
    """`riskrank backtest` with a JSON and a report: its terminal output on
    one line, the JSON and the page."""
    ran = riskrank(
        "backtest",
        history,
        *options,
        "--json-out",
        "out.json",
        "--report",
        "report.html",
        env=clean_env(),
        cwd=cwd,
    )
    assert ran.returncode == 0, ran.explain()
    document = json.loads((cwd / "out.json").read_text())
    return one_line(ran.stdout), document, (cwd / "report.html").read_text()


def steady(test: int, build: int) -> bool:
    """t00 fails in every build from the second on: the heuristic (the last
    failed first) is already the optimal order, so a candidate can at best
    tie with it, and a tie is refused (its interval is [0, 0])."""
    return test == 0 and build > 0


_NOISE = random.Random(5)  # noqa: S311
NOISE = {(_NOISE.randrange(2, TESTS), build) for build in range(200) if _NOISE.random() < 0.25}


def alternating_and_one_offs(test: int, build: int) -> bool:
    """t00 fails in the even builds and t01 in the odd ones, and now and
    then another test fails once: the heuristic puts that one first in the
    build after (it failed last), where a model of the failure rate puts
    the pair first."""
    return (test, build % 2) in ((0, 0), (1, 1)) or (test, build) in NOISE


def test_the_heuristic_served_every_build(tmp_path: Path) -> None:
    # A name with HTML's special characters: the report escapes it.
    history = write_history(tmp_path / "a<b>&.jsonl", 32, steady)
    output, document, page = backtest(
        tmp_path, history.name, "--warmup", "12", "--retrain-every", "7"
    )
    tie = "not ahead of the heuristic: +0.0000 [+0.0000, +0.0000] over {} builds"
    said = (
        "riskrank rows: no model: the heuristic served all 20 scored builds; "
        # One reason's words: its figures (each training's own) are in the table.
        "3 trainings, all refused (not ahead of the heuristic)."
    )
    assert said in output

    served = document["served"]
    assert served["text"] == said
    assert served["scored_builds"] == 20
    assert served["heuristic_builds"] == 20
    assert served["only_heuristic"] is True
    assert served["model_builds"] == []
    assert served["trainings"] == {"total": 3, "promoted": 0, "refused": 3, "not_trained": 0}
    assert [
        (t["build_index"], t["outcome"], t["version"], t["reason"]) for t in document["trainings"]
    ] == [
        (12, "refused", 1, tie.format(2)),
        (19, "refused", 2, tie.format(4)),
        (26, "refused", 3, tie.format(5)),
    ]

    # At the top, beside both results tables and beside the paired comparison.
    assert page.count(f'<p class="served heuristic">{said}</p>') == 4
    assert page.count('<tr class="refused"><td>') == 3
    assert "<td>19</td><td>b20</td><td>refused</td><td>v2</td>" in page
    assert f"<td>{tie.format(4)}</td>" in page
    # The parameters: a two-column table, every value escaped; no dict repr.
    assert '<table class="pairs"><tr><th>parameter</th><th>value</th></tr>' in page
    assert "<tr><th>history file</th><td>a&lt;b&gt;&amp;.jsonl</td></tr>" in page
    assert "<tr><th>warmup</th><td>12</td></tr>" in page
    assert "<tr><th>retrain_every</th><td>7</td></tr>" in page
    assert "<tr><th>policy.mode</th><td>order</td></tr>" in page
    assert "{'" not in page
    assert "a<b>" not in page


def test_a_promoted_model_and_the_builds_it_served(tmp_path: Path) -> None:
    history = write_history(tmp_path / "history.jsonl", 40, alternating_and_one_offs)
    # The database: a parameter holding "<", shown escaped in the report.
    kept = tmp_path / "x<y"
    kept.mkdir()
    output, document, page = backtest(
        tmp_path,
        str(history),
        "--warmup",
        "8",
        "--retrain-every",
        "8",
        "--database",
        f"sqlite:///{kept / 'backtest.db'}",
    )
    # Before the first training 8 builds are too few; the second candidate,
    # "new first, then recently failed" as a model, orders its 3 held-out
    # builds exactly as the heuristic does (ties broken as plans break
    # them), so it is not ahead; the third, the failure rate, is ahead on
    # its 5; the last only ties with it.
    said = (
        "riskrank rows: the heuristic served the first 16 of 32 scored builds, "
        "model v2 (failure rate) the last 16; "
        "4 trainings: 1 promoted (v2 before build b25), "
        "2 refused (not ahead of the heuristic: +0.0000 [+0.0000, +0.0000] over 3 builds: 1, "
        "not ahead of the active model v2: +0.0000 [+0.0000, +0.0000] over 6 builds: 1), "
        "1 not trained (8 builds: at least 10 are needed to train and validate)."
    )
    assert said in output

    served = document["served"]
    assert served["text"] == said
    assert served["heuristic_builds"] == 16
    assert served["only_heuristic"] is False
    # A simple ordering, as a model, was chosen among the candidates.
    assert served["model_builds"] == [{"version": 2, "builds": 16, "scorer": "failure rate"}]
    assert [(s["served_by"], s["version"], s["builds"]) for s in served["stretches"]] == [
        ("heuristic", None, 16),
        ("model", 2, 16),
    ]
    assert (served["stretches"][1]["first_build"], served["stretches"][1]["last_build"]) == (
        "b25",
        "b40",
    )
    assert served["trainings"] == {"total": 4, "promoted": 1, "refused": 2, "not_trained": 1}
    assert [(t["build_index"], t["outcome"], t["version"]) for t in document["trainings"]] == [
        (8, "not trained", None),
        (16, "refused", 1),
        (24, "promoted", 2),
        (32, "refused", 3),
    ]

    assert page.count(f'<p class="served">{said}</p>') == 4
    assert (
        '<tr class="promoted"><td>24</td><td>b25</td><td>promoted</td><td>v2</td>'
        "<td>failure rate</td>"
        "<td>ahead of the heuristic: +0.0250 [+0.0050, +0.0450] over 5 builds</td>"
    ) in page
    assert page.count('<tr class="refused"><td>') == 2
    assert page.count('<tr class="not-trained"><td>') == 1
    assert f"<tr><th>database</th><td>sqlite:///{tmp_path}/x&lt;y/backtest.db</td></tr>" in page


def test_the_command_module_imports_no_backtest() -> None:
    """`riskrank --help` imports every command module: this one must leave
    the backtest, numpy, LightGBM and matplotlib to the command itself."""
    heavy = ("numpy", "lightgbm", "matplotlib", "scheduler.backtest")
    probe = (
        "import sys, scheduler.cli.backtest\n"
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == ""
