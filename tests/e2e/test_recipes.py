"""The documentation's CI recipes for other runners (docs/ci/runners.md),
run as a CI step would run them (`bash -eo pipefail`, GitHub Actions'
shell), against a real `riskrank serve` and the real light client. The
runners themselves (mvn, npx jest, go, a project's own scripts) are
stand-ins on PATH that answer
the listing calls and record every other call, so the test sees exactly
what each recipe ran: with no test known to riskrank, and with riskrank
unreachable, the whole suite; with a history, the plan, riskiest first."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from scheduler.db import Database
from scheduler.ingest.history import HistoryReport
from scheduler.ingest.results import CaseResult
from scheduler.models import Outcome, Provider
from scheduler.services import history, repos, tokens
from tests.e2e.conftest import Process, clean_env
from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.slow

RECIPES = Path(__file__).resolve().parents[2] / "docs/ci/runners.md"
# The shared script the Action, the GitLab template and the Jenkinsfile run.
CI_SCRIPT = Path(__file__).resolve().parents[2] / "ci/riskrank-run.sh"
CLIENT = Path(os.path.abspath(sys.executable)).with_name("riskrank-client")
RISKRANK = Path(os.path.abspath(sys.executable)).with_name("riskrank")
SHA = "5e" * 20

# What each runner's project holds: the ids riskrank's reports give its tests.
MAVEN = [
    "com.acme.IoTest::testRead",
    "com.acme.IoTest::testWrite",
    "com.acme.NetTest::testGet",
    "com.acme.NetTest::testPost",
]
JEST = [
    "src/a.test.js::reads",
    "src/a.test.js::writes",
    "src/b.test.js::gets",
    "src/b.test.js::posts",
]
GO = [
    "example.com/svc/a::TestRead",
    "example.com/svc/a::TestWrite",
    "example.com/svc/b::TestGet",
    "example.com/svc/b::TestPost",
]
SCRIPT = ["suite/one", "suite/two", "suite/three", "suite/four"]
# In each, the one that failed in every build of the history.
FAILING = {"com.acme.NetTest::testGet", "src/b.test.js::gets", "example.com/svc/b::TestGet"}
FAILING |= {"suite/three"}

# Stand-ins: each records its call in $RUNS, one line a call.
FAKES = {
    "mvn": 'echo "mvn $*" >> "$RUNS"\n',
    "npx": """if [ "$*" = "jest --listTests" ]; then
  printf '%s\\n' "$PWD/src/a.test.js" "$PWD/src/b.test.js"; exit 0
fi
echo "npx $*" >> "$RUNS"
""",
    "go": """case "$1 $2" in
  "list ./...") printf '%s\\n' example.com/svc/a example.com/svc/b; exit 0;;
  "test -list")
    case "$4" in
      example.com/svc/a) printf 'TestRead\\nTestWrite\\n';;
      example.com/svc/b) printf 'TestGet\\nTestPost\\n';;
    esac
    printf 'ok  \\t%s\\t0.002s\\n' "$4"; exit 0;;
esac
echo "go $*" >> "$RUNS"
""",
}
SCRIPTS = {
    "list-tests": "printf '%s\\n' suite/one suite/two suite/three suite/four\n",
    "run-one-test": 'echo "run-one-test $*" >> "$RUNS"\n',
    "run-all-tests": 'echo "run-all-tests $*" >> "$RUNS"\n',
}


def recipes() -> dict[str, str]:
    """The page's shell blocks marked `<!-- recipe: NAME -->`."""
    text = RECIPES.read_text(encoding="utf-8")
    found = dict(re.findall(r"<!-- recipe: (\w+) -->\n```sh\n(.*?)```", text, flags=re.S))
    assert set(found) == {"maven", "jest", "go", "script"}, sorted(found)
    return found


def executable(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A checkout with Maven test sources and the project's own scripts;
    the runners' stand-ins in bin/."""
    root = tmp_path / "project"
    sources = root / "src/test/java/com/acme"
    sources.mkdir(parents=True)
    for name in ("IoTest", "NetTest"):
        (sources / f"{name}.java").write_text(f"class {name} {{}}\n", encoding="utf-8")
    (sources / "Helper.java").write_text("class Helper {}\n", encoding="utf-8")
    for name, body in SCRIPTS.items():
        executable(root / name, body)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        executable(bin_dir / name, body)
    os.symlink(CLIENT, bin_dir / "riskrank-client")
    return root


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Database, str]]:
    """`riskrank serve` on a SQLite database of its own, with acme/app
    registered; its URL, the database and a plans:read token."""
    if not CLIENT.exists():
        pytest.fail(f"the light client is not installed beside the tests ({CLIENT})")
    url = f"sqlite:///{tmp_path / 'riskrank.db'}"
    subprocess.run(
        [str(RISKRANK), "db", "upgrade"],
        env=clean_env(RISKRANK_DATABASE_URL=url),
        check=True,
        capture_output=True,
    )
    database = Database.from_url(url)
    with database.session() as session:
        repository = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/app")
        repository.default_branch = "main"
        token = tokens.create_token(
            session, repository=repository, scopes=(tokens.Scope.PLANS_READ,), name="ci"
        ).token
    env = clean_env(
        RISKRANK_DATABASE_URL=url,
        RISKRANK_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        RISKRANK_PLAN_EXPLORATION_RATE="0",
        RISKRANK_PLAN_FULL_RUN_EVERY="0",
    )
    port = free_port()
    process = Process(
        [str(RISKRANK), "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        log=tmp_path / "serve.log",
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.popen.poll() is not None:
            raise AssertionError(f"riskrank serve exited:\n{process.output()}")
        try:
            return requests.get(f"{base}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(ready, timeout=60, what="riskrank serve")
    yield base, database, token
    process.stop()
    database.dispose()


def learn_history(database: Database) -> None:
    """Three builds of every project's tests: the FAILING ones fail in each."""
    with database.session() as session:
        repository_id = repos.resolve_repository(session, full_name="acme/app").id
    start = datetime(2024, 3, 1, tzinfo=UTC)
    reports = [
        HistoryReport(
            build=str(build),
            commit=f"{build:040x}",
            time=start + timedelta(hours=build),
            branch="main",
            changed_files=(),
            results=tuple(
                CaseResult(
                    test=name,
                    outcome=Outcome.FAILED if name in FAILING else Outcome.PASSED,
                    duration=1.0,
                )
                for name in [*MAVEN, *JEST, *GO, *SCRIPT]
            ),
        )
        for build in (1, 2, 3)
    ]
    history.import_history(database, repository_id=repository_id, reports=reports)


def run(recipe: str, project: Path, *, url: str, token: str, **settings: str) -> list[str]:
    """Run a recipe as a GitHub Actions step would; the runners' calls.
    `settings`: more of the step's environment (RISKRANK_RUNNER, …)."""
    runs = project / "runs.txt"
    runs.unlink(missing_ok=True)
    env = clean_env(
        PATH=f"{project.parent / 'bin'}{os.pathsep}{os.environ['PATH']}",
        RUNS=str(runs),
        RISKRANK_URL=url,
        RISKRANK_TOKEN=token,
        GITHUB_SHA=SHA,
        GITHUB_REPOSITORY="acme/app",
        GITHUB_REF_NAME="main",
        CI_NODE_INDEX="1",
        CI_NODE_TOTAL="1",
        PWD=str(project),
        **settings,
    )
    completed = subprocess.run(
        [shutil.which("bash") or "bash", "-eo", "pipefail", "-c", recipe],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return runs.read_text().splitlines() if runs.exists() else []


def test_no_test_known_yet_every_recipe_runs_everything(
    server: tuple[str, Database, str], project: Path
) -> None:
    url, _, token = server
    steps = recipes()
    # Every collected class, file, package test and script test is new to
    # riskrank, so the plan runs each of them.
    [maven] = run(steps["maven"], project, url=url, token=token)
    assert maven.startswith("mvn test -Dsurefire.failIfNoSpecifiedTests=false -Dtest=")
    assert sorted(maven.split("-Dtest=")[1].split(",")) == ["com.acme.IoTest", "com.acme.NetTest"]
    [jest] = run(steps["jest"], project, url=url, token=token)
    assert jest.startswith("npx jest --runTestsByPath ")
    assert sorted(jest.split()[3:]) == ["src/a.test.js", "src/b.test.js"]
    go = run(steps["go"], project, url=url, token=token)
    assert sorted(go) == [
        "go test example.com/svc/a -run ^(TestRead|TestWrite)$",
        "go test example.com/svc/b -run ^(TestGet|TestPost)$",
    ]
    script = run(steps["script"], project, url=url, token=token)
    assert sorted(script) == sorted(f"run-one-test {name}" for name in SCRIPT)


def test_riskrank_unreachable_every_recipe_runs_the_whole_suite(
    server: tuple[str, Database, str], project: Path
) -> None:
    _, _, token = server
    dead = f"http://127.0.0.1:{free_port()}"
    steps = recipes()
    assert run(steps["maven"], project, url=dead, token=token) == ["mvn test"]
    assert run(steps["jest"], project, url=dead, token=token) == ["npx jest"]
    assert run(steps["go"], project, url=dead, token=token) == ["go test ./..."]
    assert run(steps["script"], project, url=dead, token=token) == ["run-all-tests --shard 1/1"]


def test_with_a_history_every_recipe_runs_the_plan_riskiest_first(
    server: tuple[str, Database, str], project: Path
) -> None:
    url, database, token = server
    learn_history(database)
    steps = recipes()
    [maven] = run(steps["maven"], project, url=url, token=token)
    selected = maven.split("-Dtest=")[1].split(",")
    assert selected[0] == "com.acme.NetTest#testGet"
    assert set(selected) <= {name.replace("::", "#") for name in MAVEN}
    # 30% of the four tests: two, the failing one's file first.
    [jest] = run(steps["jest"], project, url=url, token=token)
    assert jest.split()[3] == "src/b.test.js"
    go = run(steps["go"], project, url=url, token=token)
    assert any(line.startswith("go test example.com/svc/b -run ^(TestGet") for line in go)
    script = run(steps["script"], project, url=url, token=token)
    assert script[0] == "run-one-test suite/three"
    assert set(script) == {f"run-one-test {name}" for name in SCRIPT}  # order: no budget


# The shared script with each runner, as the documented Action, GitLab and
# Jenkins examples for Maven Surefire, Jest and go test set it up.
SCRIPT_RUNNERS = {"maven": "mvn test", "jest": "npx jest", "go": "go test"}


def run_script(runner: str, project: Path, *, url: str, token: str) -> list[str]:
    return run(
        f"bash {CI_SCRIPT}",
        project,
        url=url,
        token=token,
        RISKRANK_RUNNER=runner,
        RISKRANK_TEST_COMMAND=SCRIPT_RUNNERS[runner],
        RISKRANK_MODE="fraction",
        RISKRANK_BUDGET="0.5",
    )


def test_the_ci_script_runs_each_runner_s_plan_riskiest_first_or_the_whole_suite(
    server: tuple[str, Database, str], project: Path
) -> None:
    url, database, token = server
    dead = f"http://127.0.0.1:{free_port()}"
    # riskrank unreachable: each runner's whole suite.
    assert run_script("maven", project, url=dead, token=token) == ["mvn test"]
    assert run_script("jest", project, url=dead, token=token) == ["npx jest"]
    assert run_script("go", project, url=dead, token=token) == ["go test ./..."]

    learn_history(database)
    [maven] = run_script("maven", project, url=url, token=token)
    assert maven.startswith("mvn test -Dsurefire.failIfNoSpecifiedTests=false -Dtest=")
    selected = maven.split("-Dtest=")[1].split(",")
    assert selected[0] == "com.acme.NetTest#testGet"
    assert set(selected) <= {name.replace("::", "#") for name in MAVEN}
    [jest] = run_script("jest", project, url=url, token=token)
    assert jest.split()[:3] == ["npx", "jest", "--runTestsByPath"]
    assert jest.split()[3] == "src/b.test.js"
    assert set(jest.split()[3:]) <= {"src/a.test.js", "src/b.test.js"}
    [go] = run_script("go", project, url=url, token=token)
    words = go.split()
    assert words[:3] == ["go", "test", "-run"]
    assert words[3].startswith("^(TestGet")
    assert words[4] == "example.com/svc/b"
    assert set(words[4:]) <= {"example.com/svc/a", "example.com/svc/b"}
