"""The commands against the real riskrank server and worker, started as
processes on a SQLite file (the clients' shared `real_server` fixture): what
the server stored is read back from the file. Skipped where the server is
not installed, except under CI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from xml.etree import ElementTree

import pytest
from riskrank_testing import WEBHOOK_SECRET, RealServer, RealWorker, wait_for
from running import JUNIT_REPORT, REPORT_TESTS, checkout, client

pytestmark = pytest.mark.slow

GITHUB_COMMIT = "9fceb02d0ae598e95dc970b74767f19372d61af8"
GITLAB_COMMIT = "a1f0c3d5e7b9a1f0c3d5e7b9a1f0c3d5e7b9a1f0"
PLANNED_COMMIT = "b2f0c3d5e7b9a1f0c3d5e7b9a1f0c3d5e7b9a1f0"


def _report(tmp_path: Path) -> Path:
    report = tmp_path / "junit.xml"
    report.write_text(JUNIT_REPORT)
    return report


def _runs_of(server: RealServer, sha: str) -> list[tuple[int, str, str | None, str]]:
    """(run id, repository, run key, branch) of the runs stored for `sha`."""
    return server.query(
        "SELECT r.id, p.slug, r.run_key, c.branch FROM test_runs r "
        "JOIN commits c ON c.id = r.commit_id JOIN repositories p ON p.id = r.repository_id "
        "WHERE c.sha = ? ORDER BY r.id",
        sha,
    )


@pytest.mark.parametrize(
    ("ci_env", "commit", "repository", "run_key", "branch"),
    [
        (
            {
                "GITHUB_SHA": GITHUB_COMMIT,
                "GITHUB_REPOSITORY": "acme/widgets",
                "GITHUB_REF_NAME": "main",
                "GITHUB_RUN_ID": "4711",
                "GITHUB_RUN_ATTEMPT": "2",
            },
            GITHUB_COMMIT,
            "acme/widgets",
            "github-4711-2",
            "main",
        ),
        (
            {
                "CI_COMMIT_SHA": GITLAB_COMMIT.upper(),
                "CI_PROJECT_PATH": "acme/widgets",
                "CI_COMMIT_REF_NAME": "topic",
                "CI_PIPELINE_ID": "99",
            },
            GITLAB_COMMIT,
            "acme/widgets",
            "gitlab-99",
            "topic",
        ),
    ],
    ids=["github-actions", "gitlab-ci"],
)
def test_upload_reads_the_build_from_the_ci_environment(
    real_server: RealServer,
    tmp_path: Path,
    ci_env: dict[str, str],
    commit: str,
    repository: str,
    run_key: str,
    branch: str,
) -> None:
    env = {"RISKRANK_URL": real_server.url, "RISKRANK_TOKEN": real_server.token, **ci_env}
    result = client("upload", str(_report(tmp_path)), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    found = re.fullmatch(
        rf"riskrank: uploaded {re.escape(str(tmp_path / 'junit.xml'))}: "
        r"run (\d+) \(queued, 3 tests\)\n",
        result.stdout,
    )
    assert found, result.stdout
    assert _runs_of(real_server, commit) == [(int(found.group(1)), repository, run_key, branch)]


def test_upload_takes_the_commit_from_git(real_server: RealServer, tmp_path: Path) -> None:
    _first, second = checkout(tmp_path / "checkout")
    env = {
        "RISKRANK_URL": real_server.url,
        "RISKRANK_TOKEN": real_server.token,
        "RISKRANK_REPO": "acme/widgets",
    }
    result = client("upload", str(_report(tmp_path)), cwd=tmp_path / "checkout", env=env)
    assert result.returncode == 0, result.stderr
    [(_run, repository, run_key, branch)] = _runs_of(real_server, second)
    assert (repository, run_key, branch) == ("acme/widgets", None, "main")


def test_upload_of_a_revision_git_does_not_know_stores_nothing(
    real_server: RealServer, tmp_path: Path
) -> None:
    before = real_server.runs()
    env = {"RISKRANK_URL": real_server.url, "RISKRANK_TOKEN": real_server.token}
    arguments = ["upload", str(_report(tmp_path)), "--repo", "acme/widgets", "--commit", "HEAD"]
    result = client(*arguments, cwd=tmp_path, env=env)
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == (
        "riskrank: nothing uploaded, 'HEAD' is not a commit id (40 or 64 hex digits) "
        "nor a revision git knows here\n"
    )
    strict = client(*arguments, "--strict", cwd=tmp_path, env=env)
    assert strict.returncode == 1
    assert real_server.runs() == before


def test_a_refused_upload_is_one_warning(real_server: RealServer, tmp_path: Path) -> None:
    env = {"RISKRANK_URL": real_server.url, "RISKRANK_TOKEN": real_server.other_repository_token}
    arguments = ["upload", str(_report(tmp_path)), "--repo", "acme/widgets"]
    arguments += ["--commit", GITHUB_COMMIT]
    result = client(*arguments, cwd=tmp_path, env=env)
    assert (result.returncode, result.stdout) == (0, "")
    [line] = result.stderr.splitlines()
    assert line.startswith(
        f"riskrank: {tmp_path / 'junit.xml'} not uploaded: {real_server.url} answered HTTP 404: "
    ), line
    assert client(*arguments, "--strict", cwd=tmp_path, env=env).returncode == 1


def _plan_env(server: RealServer, token: str | None = None) -> dict[str, str]:
    return {"RISKRANK_URL": server.url, "RISKRANK_TOKEN": token or server.token}


def test_plan_lists_the_known_tests_and_exits_0(
    real_server: RealServer, real_worker: RealWorker, tmp_path: Path
) -> None:
    # riskrank learns the tests from an uploaded report, once the worker ingested it.
    env = {**_plan_env(real_server), "RISKRANK_REPO": "acme/widgets"}
    upload = client(
        "upload", str(_report(tmp_path)), "--commit", GITHUB_COMMIT, cwd=tmp_path, env=env
    )
    assert upload.returncode == 0, upload.stderr
    wait_for(
        lambda: (
            real_server.query("SELECT count(*) FROM test_runs WHERE status = 'pending'") == [(0,)]
        ),
        timeout=120,
        what=f"the worker to ingest the runs ({real_worker.log})",
    )
    result = client("plan", "acme/widgets", PLANNED_COMMIT, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == sorted(REPORT_TESTS)

    answer = client(
        "plan", "acme/widgets", PLANNED_COMMIT, "--format", "json", cwd=tmp_path, env=env
    )
    assert answer.returncode == 0, answer.stderr
    body = json.loads(answer.stdout)
    assert (body["commit"], body["run_all"], body["total"]) == (PLANNED_COMMIT, False, 3)

    junit = client(
        "plan", "acme/widgets", PLANNED_COMMIT, "--format", "junit", cwd=tmp_path, env=env
    )
    assert junit.returncode == 0, junit.stderr
    root = ElementTree.fromstring(junit.stdout.split("\n", 1)[1])  # noqa: S314  (our output)
    suite = root.find("testsuite")
    assert suite is not None
    names = {prop.get("name") for prop in suite.iter("property")}
    assert "shard" not in names
    assert len(suite.findall("testcase")) == 3


def test_plan_covers_the_tests_file(real_server: RealServer, tmp_path: Path) -> None:
    ids = "# collected\n\ntests/test_a.py::test_one\ntests/test_a.py::test_two\n"
    result = client(
        "plan", "acme/gadgets", PLANNED_COMMIT, "--tests-file", "-",
        cwd=tmp_path, env=_plan_env(real_server, real_server.other_repository_token), stdin=ids,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == [
        "tests/test_a.py::test_one",
        "tests/test_a.py::test_two",
    ]


def test_plan_appends_its_summary_for_the_ci_job(real_server: RealServer, tmp_path: Path) -> None:
    step_summary = tmp_path / "step_summary.md"
    env = {
        **_plan_env(real_server, real_server.other_repository_token),
        "GITHUB_STEP_SUMMARY": str(step_summary),
    }
    result = client(
        "plan", "acme/gadgets", PLANNED_COMMIT, "--tests-file", "-",
        "--summary", str(step_summary), cwd=tmp_path, env=env,
        stdin="tests/test_a.py::test_one\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = step_summary.read_text()
    assert text.startswith(
        f"### riskrank plan for `{PLANNED_COMMIT[:12]}`\n\n**1 of 1 tests selected**"
    )
    assert "| 1 | `tests/test_a.py::test_one` |" in text


def test_plan_for_a_repository_without_known_tests_exits_3(
    real_server: RealServer, tmp_path: Path
) -> None:
    env = _plan_env(real_server, real_server.tools_token)
    result = client("plan", "acme/tools", PLANNED_COMMIT, cwd=tmp_path, env=env)
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == (
        "riskrank: run the whole suite: riskrank knows no test of this repository yet "
        "and no test list was sent\n"
    )


def test_plan_of_a_revision_resolves_it_with_git(real_server: RealServer, tmp_path: Path) -> None:
    _first, second = checkout(tmp_path / "checkout")
    env = _plan_env(real_server)
    result = client(
        "plan", "acme/widgets", "HEAD", "--format", "json", cwd=tmp_path / "checkout", env=env
    )
    assert json.loads(result.stdout)["commit"] == second
    outside = client("plan", "acme/widgets", "HEAD", cwd=tmp_path, env=env)
    assert (outside.returncode, outside.stdout) == (2, "")
    assert "'HEAD' is not a commit id" in outside.stderr


def test_event_is_accepted_and_its_commit_stored(
    real_server: RealServer, real_worker: RealWorker, tmp_path: Path
) -> None:
    first, second = checkout(tmp_path / "checkout")
    env = {
        "RISKRANK_URL": real_server.url,
        "RISKRANK_SECRET": WEBHOOK_SECRET,
        "RISKRANK_REPO": "acme/tools",
        "GITHUB_RUN_ID": "8080",
    }
    result = client("event", "--strict", cwd=tmp_path / "checkout", env=env)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        rf"riskrank: event \d+ for {second} \(queued, 5 changed files\)\n", result.stdout
    ), result.stdout
    again = client("event", "--strict", cwd=tmp_path / "checkout", env=env)
    assert again.returncode == 0, again.stderr
    assert "(duplicate, 5 changed files)" in again.stdout

    def stored() -> list[tuple[str, str, str | None, int | None, int | None]]:
        return real_server.query(
            "SELECT f.path, f.status, f.old_path, f.additions, f.deletions "
            "FROM changed_files f JOIN commits c ON c.id = f.commit_id "
            "WHERE c.sha = ? ORDER BY f.path",
            second,
        )

    files = wait_for(stored, timeout=120, what=f"the worker to store it ({real_worker.log})")
    assert files == [
        ("docs.md", "removed", None, 0, 1),
        ("logo.bin", "modified", None, None, None),
        ("src/new.py", "added", None, 1, 0),
        ("src/reader.py", "modified", None, 3, 1),
        ("src/writer.py", "renamed", "src/out.py", 0, 0),
    ]
    [(parent, branch, message)] = real_server.query(
        "SELECT c.parent_sha, c.branch, c.message FROM commits c "
        "JOIN repositories p ON p.id = c.repository_id WHERE c.sha = ? AND p.slug = 'acme/tools'",
        second,
    )
    assert (parent, branch, message) == (first, "main", "Read the header once\n\nAnd say why.")


def test_event_with_the_wrong_secret_is_one_warning(
    real_server: RealServer, tmp_path: Path
) -> None:
    checkout(tmp_path / "checkout")
    env = {
        "RISKRANK_URL": real_server.url,
        "RISKRANK_SECRET": "not-the-secret",
        "RISKRANK_REPO": "acme/tools",
    }
    result = client("event", cwd=tmp_path / "checkout", env=env)
    assert (result.returncode, result.stdout) == (0, "")
    [line] = result.stderr.splitlines()
    assert f"{real_server.url} answered HTTP 401" in line, line
    assert client("event", "--strict", cwd=tmp_path / "checkout", env=env).returncode == 1
