"""`riskrank plan` as users run it: the installed command in a subprocess,
against a migrated database holding a small history."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from defusedxml import ElementTree

from scheduler.db import Database
from tests.e2e.conftest import RISKRANK, clean_env
from tests.planning.data import NAMES, SHA, make_repository


def riskrank(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RISKRANK, *args],
        env=clean_env(RISKRANK_DATABASE_URL=db_url, RISKRANK_PLAN_WAIT_SECONDS="0"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_list_json_and_junit(database: Database, db_url: str, tmp_path: Path) -> None:
    make_repository(database)
    collected = tmp_path / "collected.txt"
    collected.write_text("# collected\n" + "\n".join([*NAMES, "tests/test_new.py::test_a"]) + "\n")
    common = ["acme/app", SHA, "--mode", "fraction", "--budget", "0.3", "--tests-file"]
    with ThreadPoolExecutor(4) as pool:
        listed, as_json, as_junit, bad = pool.map(
            lambda args: riskrank(db_url, "plan", *args),
            [
                [*common, str(collected)],
                [*common, str(collected), "--format", "json"],
                [*common, str(collected), "--format", "junit"],
                ["acme/app", SHA, "--shard", "3/2"],
            ],
        )
    assert listed.returncode == 0, listed.stderr
    plan = json.loads(as_json.stdout)
    chosen = [test["test"] for test in plan["tests"] if test["selected"]]
    assert listed.stdout.splitlines() == chosen
    assert "tests/test_new.py::test_a" in chosen
    assert plan["total"] == len(NAMES) + 1
    suite = ElementTree.fromstring(as_junit.stdout).find("testsuite")
    assert suite is not None
    cases = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")]
    assert cases == chosen
    assert (bad.returncode, "1 <= i <= n" in bad.stderr) == (2, True)
