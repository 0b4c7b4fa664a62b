"""`riskrank plan` as users run it: the installed command in a subprocess,
against a migrated database holding a small history."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from defusedxml import ElementTree
from sqlalchemy import func, select

from scheduler.cli.plan import Format
from scheduler.db import Database
from scheduler.models import Commit, Plan, Provider
from scheduler.services import repos
from tests.e2e.conftest import RISKRANK, clean_env
from tests.planning.data import NAMES, SHA, add_commit, make_repository

# make_repository's history: builds 1 to 6, commits 000…01 to 000…06.
HISTORY = [f"{build:040x}" for build in range(1, 7)]


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
    # What the dropped tests may hide, on stderr (stdout stays the list).
    dropped = plan["total"] - len(chosen)
    assert dropped > 0
    assert (
        f"riskrank: {dropped} tests dropped: miss risk {plan['expected_failures_dropped']:.2f} "
        f"expected failures (95% bound {plan['failures_dropped_bound']}), "
        f"{plan['miss_probability']:.1%} chance that at least one fails"
    ) in listed.stderr
    suite = ElementTree.fromstring(as_junit.stdout).find("testsuite")
    assert suite is not None
    cases = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")]
    assert cases == chosen
    assert (bad.returncode, "1 <= i <= n" in bad.stderr) == (2, True)


def stored(database: Database) -> tuple[int, int]:
    """How many commits and plans are stored."""
    with database.session() as session:
        return (
            session.scalar(select(func.count()).select_from(Commit)) or 0,
            session.scalar(select(func.count()).select_from(Plan)) or 0,
        )


def run_all(db_url: str, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: riskrank(db_url, *args), commands))


def test_what_is_not_a_commit_id_is_a_usage_error_and_stores_nothing(
    database: Database, db_url: str
) -> None:
    make_repository(database)
    before = stored(database)
    head, branch, name, short = run_all(
        db_url,
        ["plan", "acme/app", "HEAD"],
        ["plan", "acme/app", "main", "--format", "json"],
        ["plan", "acme/app", "not-a-sha"],
        ["plan", "acme/app", "abc"],
    )
    for ran, given in ((head, "HEAD"), (branch, "main"), (name, "not-a-sha"), (short, "abc")):
        assert (ran.returncode, ran.stdout) == (2, ""), ran.stderr
        message = " ".join(ran.stderr.split())
        assert f"error: '{given}' is not a commit id: give the full 40 (or 64) hex digits" in (
            message
        )
        assert "or at least 4 of a commit riskrank knows" in message
    assert stored(database) == before


def test_a_prefix_of_a_known_commit_names_it(database: Database, db_url: str) -> None:
    repository_id = make_repository(database)
    twin = "abab" + "ff" * 18
    add_commit(database, repository_id, SHA)
    add_commit(database, repository_id, twin)
    before = stored(database)
    unique, upper, ambiguous, many, unknown = run_all(
        db_url,
        ["plan", "acme/app", SHA[:6], "--format", "json"],
        ["plan", "acme/app", twin[:8].upper(), "--format", "json"],
        ["plan", "acme/app", "abab"],
        ["plan", "acme/app", "0000"],
        ["plan", "acme/app", "dead"],
    )
    assert unique.returncode == 0, unique.stderr
    assert json.loads(unique.stdout)["commit"] == SHA
    assert upper.returncode == 0, upper.stderr
    assert json.loads(upper.stdout)["commit"] == twin
    # Both were planned (a plan each), and no commit was added.
    assert stored(database) == (before[0], before[1] + 2)

    assert (ambiguous.returncode, ambiguous.stdout) == (2, "")
    assert f"error: abab names 2 commits of acme/app ({SHA}, {twin}): give more digits" in " ".join(
        ambiguous.stderr.split()
    )
    assert (many.returncode, many.stdout) == (2, "")
    listed = ", ".join(HISTORY[:5])
    assert (
        f"error: 0000 names more than 5 commits of acme/app ({listed}): give more digits"
        in " ".join(many.stderr.split())
    )
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert "error: riskrank knows no commit dead of acme/app" in " ".join(unknown.stderr.split())


def test_junit_without_a_shard_or_budget_leaves_them_out(database: Database, db_url: str) -> None:
    make_repository(database)
    [ran] = run_all(db_url, ["plan", "acme/app", SHA, "--format", "junit"])
    assert ran.returncode == 0, ran.stderr
    suite = ElementTree.fromstring(ran.stdout).find("testsuite")
    assert suite is not None
    found = suite.find("properties")
    assert found is not None
    properties = {prop.get("name"): prop.get("value") for prop in found.iter("property")}
    assert set(properties) == {"plan_id", "status", "mode", "run_all", "total", "selected"}
    assert (properties["mode"], properties["total"], properties["run_all"]) == (
        "order",
        str(len(NAMES)),
        "false",
    )
    assert 'value="None"' not in ran.stdout


def test_no_known_tests_exits_3_to_run_the_whole_suite(database: Database, db_url: str) -> None:
    with database.session() as session:
        repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/new")
    listed, as_json, as_junit = run_all(
        db_url, *(["plan", "acme/new", SHA, "--format", output] for output in Format)
    )
    for ran in (listed, as_json, as_junit):
        assert ran.returncode == 3, ran.stderr
        [line] = ran.stderr.splitlines()
        assert line == (
            "riskrank: riskrank knows no test of this repository yet and no test list was sent: "
            "run the whole suite"
        )
    assert listed.stdout == ""
    answer = json.loads(as_json.stdout)
    assert (answer["status"], answer["run_all"], answer["total"]) == ("no_tests", True, 0)
    suite = ElementTree.fromstring(as_junit.stdout).find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "0"
