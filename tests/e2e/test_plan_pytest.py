"""Issue 5 end to end, on real processes: `riskrank serve` and a real
`riskrank worker` on PostgreSQL and Redis. A history of reports comes in
through the results API; a signed GitHub push is scored by the worker; a
pytest session in a throwaway project, with the pytest-riskrank plugin
installed as users install it, asks for the plan, runs the risky test
first and only the selected tests, and its outcomes come back with the
plan's id: the statistics move and the plan is evaluated.

The session is `python -m pytest` in a subprocess (what pytester's
runpytest_subprocess does): the plugin loads from its entry point, exactly
as in a CI job."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from scheduler.db import Database
from scheduler.models import (
    Commit,
    KnownTest,
    KnownTestStats,
    Plan,
    Provider,
    RunStatus,
    SuiteRun,
)
from scheduler.services import repos, tokens
from tests.conftest import empty_all_tables
from tests.e2e.conftest import Process, clean_env
from tests.helpers import SECRET, free_port, github_headers, sample, wait_for
from tests.planning.data import recorded

pytestmark = pytest.mark.slow

Start = Callable[..., Process]

REPOSITORY = "binkkatal/sample_app"
HEAD = "fd489864e7642b48eaad6e3f155c10e46810ec72"  # the head of push-normal-branch.json

CALM = [f"test_app.py::test_calm_{number}" for number in range(1, 6)]
RISKY = "test_app.py::test_risky"
NEW = "test_app.py::test_new"

PROJECT = """
def test_risky():
    assert "regression" == "fixed"

def test_new():
    pass
""" + "".join(f"\ndef test_calm_{number}():\n    pass\n" for number in range(1, 6))


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    database = Database.from_url(postgres_url)
    empty_all_tables(database)
    with database.session() as session:
        repos.add_repository(
            session, provider=Provider.GITHUB, full_name=REPOSITORY, webhook_secret=SECRET
        )
    yield database
    database.dispose()


@pytest.fixture
def token(pg: Database) -> str:
    with pg.session() as session:
        repository = repos.resolve_repository(session, full_name=REPOSITORY)
        return tokens.create_token(
            session, repository=repository, scopes=tokens.DEFAULT_SCOPES, name="ci"
        ).token


@pytest.fixture
def riskrank_url(
    pg: Database, postgres_url: str, redis_url: str, start: Start, tmp_path: Path
) -> Iterator[str]:
    """`riskrank serve` and one worker. No exploration and no periodic full
    run, so that the selection is the policy's rules and budget alone."""
    env = clean_env(
        RISKRANK_DATABASE_URL=postgres_url,
        RISKRANK_BROKER_URL=redis_url,
        RISKRANK_PLAN_EXPLORATION_RATE="0",
        RISKRANK_PLAN_FULL_RUN_EVERY="0",
    )
    worker = start("worker", "--concurrency", "1", env=env)
    port = free_port()
    server = start("serve", "--port", str(port), env=env)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if server.popen.poll() is not None:
            raise AssertionError(f"riskrank serve exited:\n{server.output()}")
        try:
            return requests.get(f"{url}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(ready, timeout=60, what="riskrank serve to be ready")
    yield url
    assert worker.popen.poll() is None, worker.output()


def _post_run(url: str, token: str, commit: str, outcomes: dict[str, str]) -> int:
    response = requests.post(
        f"{url}/api/v1/repos/{REPOSITORY}/runs",
        json={
            "commit": commit,
            "branch": "master",
            "results": [
                {"test": test, "outcome": outcome, "duration": 0.5, "file": "test_app.py"}
                for test, outcome in outcomes.items()
            ],
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    run_id: int = response.json()["run_id"]
    return run_id


def _ingested(database: Database, run_id: int) -> bool:
    with database.session() as session:
        return session.get_one(SuiteRun, run_id).status is RunStatus.INGESTED


def _statistics(database: Database) -> dict[str, tuple[int, int]]:
    with database.session() as session:
        rows = session.execute(
            select(KnownTest.name, KnownTestStats.runs, KnownTestStats.failures).join(
                KnownTestStats, KnownTestStats.test_id == KnownTest.id
            )
        )
        return {name: (runs, failures) for name, runs, failures in rows}


def _head_plan(database: Database) -> int | None:
    with database.session() as session:
        return session.scalar(
            select(Plan.id).join(Commit, Commit.id == Plan.commit_id).where(Commit.sha == HEAD)
        )


def _selection(database: Database, plan_id: int) -> dict[str, tuple[bool | None, str | None]]:
    return {
        name: (selected, rule)
        for name, (selected, _propensity, rule) in recorded(database, plan_id).items()
    }


def _evaluation(database: Database, plan_id: int) -> dict[str, Any] | None:
    with database.session() as session:
        return session.get_one(Plan, plan_id).evaluation


def _ran_in_order(output: str) -> list[str]:
    return re.findall(r"^(test_app\.py::\w+) (?:PASSED|FAILED)", output, re.MULTILINE)


def test_a_pytest_session_follows_the_plan_and_its_outcomes_come_back(
    pg: Database, token: str, riskrank_url: str, github_samples: Path, tmp_path: Path
) -> None:
    # History: test_risky failed in both earlier builds, the others passed.
    history = [
        _post_run(
            riskrank_url,
            token,
            commit,
            {RISKY: "failed", **dict.fromkeys(CALM, "passed")},
        )
        for commit in ("1" * 40, "2" * 40)
    ]
    for run_id in history:
        wait_for(lambda run_id=run_id: _ingested(pg, run_id), timeout=90, what=f"run {run_id}")

    # The push: the worker records the commit and scores it.
    body = sample(github_samples, "push-normal-branch.json")
    response = requests.post(
        f"{riskrank_url}/webhooks/github", data=body, headers=github_headers(body), timeout=30
    )
    assert response.status_code == 202, response.text
    plan_id = wait_for(lambda: _head_plan(pg), timeout=90, what="the worker to score the push")

    # The CI job: pytest with the plugin, a third of the tests as the budget.
    project = tmp_path / "project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_app.py").write_text(PROJECT)
    env = {
        key: value
        for key, value in clean_env(
            RISKRANK_TOKEN=token,
            RISKRANK_REPO=REPOSITORY,
            RISKRANK_COMMIT=HEAD,
            RISKRANK_BRANCH="master",
        ).items()
        if not key.startswith(("GITHUB_", "CI", "PYTEST_"))
    }
    session = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-v",
            "-p",
            "no:cacheprovider",
            f"--riskrank-url={riskrank_url}",
            "--riskrank-mode=fraction",
            "--riskrank-budget=0.3",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = session.stdout + session.stderr
    assert session.returncode == 1, output  # test_risky fails, and it ran

    selection = _selection(pg, plan_id)
    selected = {test for test, (chosen, _rule) in selection.items() if chosen}
    dropped = {test for test, (chosen, _rule) in selection.items() if chosen is False}
    ran = _ran_in_order(output)
    # The risky test first, the new one kept, only the selected tests, some dropped.
    assert ran[0] == RISKY, output
    assert NEW in ran
    assert set(ran) == selected | {NEW}, output
    assert dropped, output
    assert not dropped & set(ran), output
    assert f"7 items / {7 - len(ran)} deselected / {len(ran)} selected" in output
    assert selection[RISKY] == (True, "recently_failed")
    plan_line = next(line for line in output.splitlines() if line.startswith("riskrank: plan"))
    assert plan_line.startswith(f"riskrank: plan {plan_id} (heuristic): running {len(ran)} of 7")
    upload_line = re.search(r"^riskrank: uploaded (\d+) results \(run (\d+)\)$", output, re.M)
    assert upload_line, output
    assert int(upload_line[1]) == len(ran)
    run_id = int(upload_line[2])

    # The outcomes come back: ingested with the plan's id, the statistics move
    # for the tests that ran (and only those), and the plan is evaluated.
    wait_for(lambda: _ingested(pg, run_id), timeout=90, what=f"run {run_id} to be ingested")
    with pg.session() as db_session:
        assert db_session.get_one(SuiteRun, run_id).plan_id == plan_id
    statistics = _statistics(pg)
    assert statistics[RISKY] == (3, 3)
    assert statistics[NEW] == (1, 0)
    for test in CALM:
        assert statistics[test] == ((3, 0) if test in ran else (2, 0))
    evaluation = _evaluation(pg, plan_id)
    assert evaluation is not None
    assert evaluation["run_ids"] == [run_id]
    assert (evaluation["ran"], evaluation["failures"], evaluation["failures_caught"]) == (
        len(ran),
        1,
        1,
    )
    assert evaluation["first_failure"] == 1
    assert evaluation["apfd"] == pytest.approx(1 - 1 / len(ran) + 1 / (2 * len(ran)))
