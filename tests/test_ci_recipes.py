"""The ready-made CI configuration: the GitHub Action, the GitLab template and
the Jenkinsfile all call ci/riskrank-run.sh, and that script, run as a CI step
runs it, against a real `riskrank serve` (SQLite) and the real light client,
for a small pytest project: it asks for the plan, runs the tests the plan
selects, riskiest first, and uploads the report with the plan's id; with
riskrank unreachable, or the client not installable, it runs the whole suite.
Its exit status is the test command's in every case."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml
from defusedxml import ElementTree

from scheduler.db import Database
from scheduler.ingest.history import HistoryReport
from scheduler.ingest.results import CaseResult
from scheduler.models import Outcome, Provider
from scheduler.services import history, repos, tokens
from tests.e2e.conftest import Process, clean_env
from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "ci/riskrank-run.sh"
ACTION = ROOT / ".github/actions/riskrank/action.yml"
GITLAB = ROOT / "ci/gitlab/riskrank.gitlab-ci.yml"
JENKINSFILE = ROOT / "ci/jenkins/Jenkinsfile"
CLIENT_SOURCE = ROOT / "clients/riskrank-client/src"
SHA = "7c" * 20
TESTS = [f"tests/test_app.py::test_{name}" for name in ("a", "b", "c", "d")]
FAILING = "tests/test_app.py::test_c"
# The pytest-riskrank plugin is installed here: the script turns it off.
PYTEST = f"{shlex.quote(sys.executable)} -m pytest -q -p no:cacheprovider"


@dataclass(frozen=True)
class Server:
    url: str
    token: str
    database: Path

    def query(self, sql: str, *parameters: object) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.database, timeout=10) as connection:
            return connection.execute(sql, parameters).fetchall()


def _python_env(**overrides: str) -> dict[str, str]:
    # This checkout's code, whatever the installed console scripts point at.
    return clean_env(PYTHONPATH=os.pathsep.join([str(ROOT), str(CLIENT_SOURCE)]), **overrides)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`riskrank serve` on SQLite with acme/app registered, three builds of
    history in which test_c failed every time, and a CI token."""
    home = tmp_path_factory.mktemp("riskrank")
    path = home / "riskrank.db"
    env = _python_env(
        RISKRANK_DATABASE_URL=f"sqlite:///{path}",
        RISKRANK_BROKER_URL=f"sqla+sqlite:///{home / 'broker.db'}",
        RISKRANK_PLAN_EXPLORATION_RATE="0",
        RISKRANK_PLAN_FULL_RUN_EVERY="0",
    )
    riskrank = [sys.executable, "-m", "scheduler.cli"]
    subprocess.run([*riskrank, "db", "upgrade"], env=env, cwd=home, check=True, capture_output=True)
    database = Database.from_url(f"sqlite:///{path}")
    with database.session() as session:
        repository = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/app")
        repository.default_branch = "main"
        repository_id = repository.id
        token = tokens.create_token(
            session,
            repository=repository,
            scopes=(tokens.Scope.PLANS_READ, tokens.Scope.RESULTS_WRITE),
            name="ci",
        ).token
    start = datetime(2024, 3, 1, tzinfo=UTC)
    history.import_history(
        database,
        repository_id=repository_id,
        reports=[
            HistoryReport(
                build=str(build),
                commit=f"{build:040x}",
                time=start + timedelta(hours=build),
                branch="main",
                changed_files=(),
                results=tuple(
                    CaseResult(
                        test=test,
                        outcome=Outcome.FAILED if test == FAILING else Outcome.PASSED,
                        duration=1.0,
                    )
                    for test in TESTS
                ),
            )
            for build in (1, 2, 3)
        ],
    )
    database.dispose()
    port = free_port()
    process = Process(
        [*riskrank, "serve", "--port", str(port)], env=env, cwd=home, log=home / "serve.log"
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.popen.poll() is not None:
            raise AssertionError(f"riskrank serve exited:\n{process.output()}")
        try:
            return requests.get(f"{url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(ready, timeout=60, what="riskrank serve")
    yield Server(url=url, token=token, database=path)
    process.stop()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A pytest project with the four tests riskrank knows; test_c fails."""
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (root / "tests/test_app.py").write_text(
        "def test_a():\n    pass\n\n\n"
        "def test_b():\n    pass\n\n\n"
        "def test_c():\n    assert 1 + 1 == 3\n\n\n"
        "def test_d():\n    pass\n",
        encoding="utf-8",
    )
    return root


def run_script(project: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """ci/riskrank-run.sh as a CI step runs it, the light client from this checkout."""
    defaults = {
        "RISKRANK_RUNNER": "pytest",
        "RISKRANK_TEST_COMMAND": PYTEST,
        "RISKRANK_CLIENT": f"{shlex.quote(sys.executable)} -m riskrank_client",
        "RISKRANK_REPO": "acme/app",
        "RISKRANK_COMMIT": SHA,
        "RISKRANK_BRANCH": "main",
        "RISKRANK_RUN_KEY": "build-7",
    }
    env = _python_env(**{**defaults, **settings})
    return subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def ran(project: Path) -> list[str]:
    """The tests pytest ran, in order, from the report the script asked for."""
    report = ElementTree.parse(project / "riskrank-junit.xml")
    return [f"{case.get('file')}::{case.get('name')}" for case in report.getroot().iter("testcase")]


def test_the_action_runs_the_script_with_its_inputs() -> None:
    action = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    assert action["runs"]["using"] == "composite"
    assert {"command", "runner", "url", "token", "mode", "budget", "shard"} <= set(action["inputs"])
    assert [name for name, spec in action["inputs"].items() if spec.get("required")] == [
        "command",
        "url",
        "token",
    ]
    [step] = action["runs"]["steps"]
    assert step["shell"] == "bash"
    assert step["run"] == 'bash "$GITHUB_ACTION_PATH/../../../ci/riskrank-run.sh"'
    # The action's directory is three levels below the repository's root.
    assert (ACTION.parent / "../../../ci/riskrank-run.sh").resolve() == SCRIPT
    assert (ACTION.parent / "../../../clients/riskrank-client").resolve().is_dir()
    env = step["env"]
    assert env["RISKRANK_TEST_COMMAND"] == "${{ inputs.command }}"
    assert env["RISKRANK_URL"] == "${{ inputs.url }}"
    assert env["RISKRANK_TOKEN"] == "${{ inputs.token }}"
    # Every input reaches the script.
    for name in action["inputs"]:
        assert any(f"inputs.{name}" in value for value in env.values()), name


def test_the_gitlab_template_and_the_jenkinsfile_run_the_script() -> None:
    template = yaml.safe_load(GITLAB.read_text(encoding="utf-8"))
    job = template[".riskrank"]
    assert {"RISKRANK_REF", "RISKRANK_RUNNER", "RISKRANK_HOME"} <= set(job["variables"])
    [script] = job["script"]
    assert 'bash "$RISKRANK_HOME/ci/riskrank-run.sh"' in script
    # Without riskrank's sources, the whole suite.
    assert 'bash -c "$RISKRANK_TEST_COMMAND"' in script
    assert "riskrank-junit.xml" in job["artifacts"]["reports"]["junit"]
    jenkinsfile = JENKINSFILE.read_text(encoding="utf-8")
    assert "bash .riskrank/ci/riskrank-run.sh" in jenkinsfile
    assert 'bash -c "$RISKRANK_TEST_COMMAND"' in jenkinsfile
    assert "credentials('riskrank-token')" in jenkinsfile


def test_the_script_runs_the_plan_and_uploads_its_report(server: Server, project: Path) -> None:
    completed = run_script(
        project,
        RISKRANK_URL=server.url,
        RISKRANK_TOKEN=server.token,
        RISKRANK_MODE="fraction",
        RISKRANK_BUDGET="0.5",
    )
    # test_c failed: the step fails as pytest did.
    assert completed.returncode == 1, completed.stderr
    [(plan_id, policy)] = server.query(
        "SELECT plans.id, plans.policy FROM plans JOIN commits ON commits.id = plans.commit_id"
        " WHERE commits.sha = ?",
        SHA,
    )
    assert '"fraction"' in str(policy)
    assert f"riskrank: running 2 of 4 tests, riskiest first (plan {plan_id})" in completed.stderr
    # Half the tests, the one that failed in every build first.
    tests = ran(project)
    assert len(tests) == 2
    assert tests[0] == FAILING
    assert set(tests) < set(TESTS)
    [(run_plan, run_key, report)] = server.query(
        "SELECT test_runs.plan_id, test_runs.run_key, test_runs.report FROM test_runs"
        " JOIN commits ON commits.id = test_runs.commit_id WHERE commits.sha = ?",
        SHA,
    )
    assert (run_plan, run_key) == (plan_id, "build-7")
    assert report == (project / "riskrank-junit.xml").read_bytes()


def test_riskrank_unreachable_the_whole_suite_runs(project: Path) -> None:
    completed = run_script(
        project, RISKRANK_URL=f"http://127.0.0.1:{free_port()}", RISKRANK_TOKEN="rr_x"
    )
    assert completed.returncode == 1, completed.stderr
    assert ran(project) == TESTS
    assert "riskrank: running the whole suite" in completed.stderr


def test_the_exit_status_is_the_test_command_s(project: Path) -> None:
    (project / "tests/test_app.py").write_text("def test_a():\n    pass\n", encoding="utf-8")
    dead = f"http://127.0.0.1:{free_port()}"
    assert run_script(project, RISKRANK_URL=dead, RISKRANK_TOKEN="rr_x").returncode == 0
    command = f"{PYTEST} tests; exit 7;"  # pytest passes, then the command says 7
    completed = run_script(
        project, RISKRANK_URL=dead, RISKRANK_TOKEN="rr_x", RISKRANK_TEST_COMMAND=command
    )
    assert completed.returncode == 7, completed.stderr


def test_no_client_to_install_the_whole_suite_runs(server: Server, project: Path) -> None:
    completed = run_script(
        project,
        RISKRANK_URL=server.url,
        RISKRANK_TOKEN=server.token,
        RISKRANK_CLIENT="riskrank-client-not-installed",
        RISKRANK_CLIENT_PACKAGE=str(project / "no-such-package"),
    )
    assert completed.returncode == 1, completed.stderr
    assert "riskrank: the light client could not be installed" in completed.stderr
    assert ran(project) == TESTS


def test_the_job_summary_is_the_client_s_plan_summary(server: Server, project: Path) -> None:
    # Another commit than the other tests', whose plans they count.
    commit = "8d" * 20
    step_summary = project.parent / "step-summary.md"
    step_summary.write_text("an earlier step's\n", encoding="utf-8")
    plan = {"RISKRANK_MODE": "fraction", "RISKRANK_BUDGET": "0.5"}
    completed = run_script(
        project,
        RISKRANK_URL=server.url,
        RISKRANK_TOKEN=server.token,
        RISKRANK_COMMIT=commit,
        GITHUB_STEP_SUMMARY=str(step_summary),
        **plan,
    )
    assert completed.returncode == 1, completed.stderr
    assert ran(project)[0] == FAILING
    written = step_summary.read_text(encoding="utf-8")
    assert written.startswith(
        f"an earlier step's\n### riskrank plan for `{commit[:12]}`\n\n**2 of 4 tests selected**"
    ), written
    assert f"| 1 | `{FAILING}` |" in written
    assert "**riskrank**:" not in written  # the plan's summary, not the script's line
    # The light client's own --summary for the same request, byte for byte.
    again = project.parent / "client-summary.md"
    asked = subprocess.run(
        [sys.executable, "-m", "riskrank_client", "plan", "acme/app", commit,
         "--tests-file", "-", "--branch", "main", "--summary", str(again)],
        input="".join(f"{test}\n" for test in TESTS),
        env=_python_env(RISKRANK_URL=server.url, RISKRANK_TOKEN=server.token, **plan),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert written == "an earlier step's\n" + again.read_text(encoding="utf-8")


def test_riskrank_unreachable_the_job_summary_says_the_whole_suite_ran(project: Path) -> None:
    step_summary = project.parent / "step-summary.md"
    completed = run_script(
        project,
        RISKRANK_URL=f"http://127.0.0.1:{free_port()}",
        RISKRANK_TOKEN="rr_x",
        GITHUB_STEP_SUMMARY=str(step_summary),
    )
    assert completed.returncode == 1, completed.stderr
    assert ran(project) == TESTS
    assert step_summary.read_text(encoding="utf-8") == "**riskrank**: running the whole suite\n"


def test_a_summary_file_that_cannot_be_written_changes_nothing(
    server: Server, project: Path
) -> None:
    missing = project.parent / "no-such-directory" / "summary.md"
    commit = "9e" * 20
    completed = run_script(
        project,
        RISKRANK_URL=server.url,
        RISKRANK_TOKEN=server.token,
        RISKRANK_COMMIT=commit,
        RISKRANK_MODE="fraction",
        RISKRANK_BUDGET="0.5",
        RISKRANK_SUMMARY=str(missing),
    )
    assert completed.returncode == 1, completed.stderr
    # The plan is followed all the same, and the report uploaded.
    tests = ran(project)
    assert len(tests) == 2
    assert tests[0] == FAILING
    assert f"riskrank: could not write the summary to {missing}" in completed.stderr
    assert "riskrank: running 2 of 4 tests, riskiest first" in completed.stderr
    assert not missing.parent.exists()
    [(run_plan,)] = server.query(
        "SELECT test_runs.plan_id FROM test_runs"
        " JOIN commits ON commits.id = test_runs.commit_id WHERE commits.sha = ?",
        commit,
    )
    assert run_plan is not None


# --- the GitLab template and the Jenkinsfile: complete, copy-paste -----------------

GITLAB_DOCS = ROOT / "docs/ci/gitlab-ci.md"
JENKINS_DOCS = ROOT / "docs/ci/jenkins.md"
# What a user cannot fill in: <SOMETHING>, a made-up host or project, a to-do.
PLACEHOLDER = re.compile(
    r"<[A-Za-z][\w -]*>|example\.(?:com|org)|tools/riskrank|CHANGE_?ME|TODO|FIXME"
)
# What each recipe reads that the user sets up (the rest has a working default).
SET_UP = {
    GITLAB_DOCS: ("RISKRANK_PROJECT", "RISKRANK_URL", "RISKRANK_TOKEN", "RISKRANK_SOURCE"),
    JENKINS_DOCS: ("RISKRANK_URL", "RISKRANK_SOURCE", "riskrank-token"),
}
GITLAB_SHELL = ["bash", "-eo", "pipefail", "-c"]  # GitLab's runner on a bash image
JENKINS_SHELL = ["sh", "-xe", "-c"]  # Jenkins' sh step


def _blocks(page: Path, language: str) -> list[str]:
    text = page.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def _gitlab_script() -> str:
    [script] = yaml.safe_load(GITLAB.read_text(encoding="utf-8"))[".riskrank"]["script"]
    return str(script)


def _jenkins_script() -> str:
    quotes = "'" * 3
    found = re.search(
        rf"sh {quotes}\n(.*?){quotes}", JENKINSFILE.read_text(encoding="utf-8"), re.DOTALL
    )
    assert found is not None
    return found.group(1)


def test_the_gitlab_and_jenkins_recipes_are_complete_and_documented() -> None:
    jenkinsfile = JENKINSFILE.read_text(encoding="utf-8")
    recipes = {
        GITLAB: GITLAB.read_text(encoding="utf-8"),
        JENKINSFILE: jenkinsfile,
        GITLAB_DOCS: "".join(_blocks(GITLAB_DOCS, "yaml")),
        JENKINS_DOCS: "".join(_blocks(JENKINS_DOCS, "groovy")),
    }
    for path, text in recipes.items():
        assert PLACEHOLDER.findall(text) == [], path
    # Every setting the recipes read is documented: the script's at its top
    # and in the settings table, the recipe's where its page sets it up.
    documented = SCRIPT.read_text(encoding="utf-8") + (ROOT / "docs/ci/index.md").read_text(
        encoding="utf-8"
    )
    for page, names in SET_UP.items():
        text = page.read_text(encoding="utf-8")
        setup = text[text.index("Set up once") : text.index("## pytest")]
        for name in names:
            assert f"`{name}`" in setup, (page, name)
        documented += text
    for path in (GITLAB, JENKINSFILE):
        for name in set(re.findall(r"RISKRANK_[A-Z_]+", recipes[path])):
            assert name in documented, (path, name)
    # That the docs' examples are the files: tests/test_docs.py.


@pytest.fixture
def riskrank_source(tmp_path: Path) -> Path:
    """riskrank's sources as a git repository of their own (branch main):
    what the recipes clone, with this checkout's script and light client."""
    source = tmp_path / "mirror" / "platform" / "riskrank.git"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*_cache")
    shutil.copytree(ROOT / "ci", source / "ci", ignore=ignore)
    shutil.copytree(
        ROOT / "clients/riskrank-client", source / "clients/riskrank-client", ignore=ignore
    )
    git = ["git", "-c", "user.name=ci", "-c", "user.email=ci@localhost", "-C", str(source)]
    for arguments in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "riskrank"]):
        subprocess.run([*git, *arguments], check=True, capture_output=True)
    return source


def run_recipe(
    shell: list[str], script: str, project: Path, **settings: str
) -> subprocess.CompletedProcess[str]:
    """A recipe's shell part as its CI runs it, in the project's checkout."""
    defaults = {
        "RISKRANK_RUNNER": "pytest",
        "RISKRANK_TEST_COMMAND": PYTEST,
        "RISKRANK_CLIENT": f"{shlex.quote(sys.executable)} -m riskrank_client",
        "RISKRANK_REPO": "acme/app",
        "RISKRANK_BRANCH": "main",
        "RISKRANK_REF": "main",
    }
    return subprocess.run(
        [*shell, script],
        cwd=project,
        env=_python_env(**{**defaults, **settings}),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_gitlab_job_clones_riskrank_project_and_follows_the_plan(
    server: Server, project: Path, riskrank_source: Path
) -> None:
    mirror = riskrank_source.parents[1]
    completed = run_recipe(
        GITLAB_SHELL,
        _gitlab_script(),
        project,
        RISKRANK_URL=server.url,
        RISKRANK_TOKEN=server.token,
        RISKRANK_COMMIT="a1" * 20,
        RISKRANK_MODE="fraction",
        RISKRANK_BUDGET="0.5",
        RISKRANK_PROJECT="platform/riskrank",
        RISKRANK_HOME=str(project / ".riskrank"),
        CI_JOB_TOKEN="job-token",
        CI_SERVER_HOST="gitlab.test",
        # The default address, https://gitlab-ci-token:…@gitlab.test/platform/riskrank.git,
        # answered by the local mirror.
        GIT_CONFIG_COUNT="1",
        GIT_CONFIG_KEY_0=f"url.file://{mirror}/.insteadOf",
        GIT_CONFIG_VALUE_0="https://gitlab-ci-token:job-token@gitlab.test/",
    )
    assert completed.returncode == 1, completed.stderr  # test_c failed, as pytest says
    assert (project / ".riskrank/ci/riskrank-run.sh").is_file()
    tests = ran(project)
    assert len(tests) == 2
    assert tests[0] == FAILING
    assert "riskrank: running 2 of 4 tests, riskiest first (plan " in completed.stderr


def test_the_jenkins_stage_clones_riskrank_source_and_follows_the_plan(
    server: Server, project: Path, riskrank_source: Path
) -> None:
    completed = run_recipe(
        JENKINS_SHELL,
        _jenkins_script(),
        project,
        RISKRANK_URL=server.url,
        RISKRANK_TOKEN=server.token,
        RISKRANK_COMMIT="b2" * 20,
        RISKRANK_MODE="fraction",
        RISKRANK_BUDGET="0.5",
        RISKRANK_SOURCE=f"file://{riskrank_source}",
    )
    assert completed.returncode == 1, completed.stderr
    tests = ran(project)
    assert len(tests) == 2
    assert tests[0] == FAILING


@pytest.mark.parametrize(
    ("shell", "script", "said"),
    [
        (
            GITLAB_SHELL,
            _gitlab_script,
            "riskrank: set the CI/CD variable RISKRANK_PROJECT (the project holding "
            "riskrank's sources); running the whole suite",
        ),
        (
            JENKINS_SHELL,
            _jenkins_script,
            "riskrank: RISKRANK_SOURCE is not set (a git address of riskrank's sources); "
            "running the whole suite",
        ),
    ],
    ids=["gitlab", "jenkins"],
)
def test_a_recipe_not_set_up_says_so_and_runs_the_whole_suite(
    server: Server, project: Path, shell: list[str], script: Callable[[], str], said: str
) -> None:
    completed = run_recipe(
        shell,
        script(),
        project,
        RISKRANK_URL=server.url,
        RISKRANK_TOKEN=server.token,
        RISKRANK_HOME=str(project / ".riskrank"),
        RISKRANK_TEST_COMMAND=f"{PYTEST} -o junit_family=xunit1 --junitxml=riskrank-junit.xml",
    )
    assert completed.returncode == 1, completed.stderr  # test_c failed
    assert said in completed.stderr
    assert ran(project) == TESTS
