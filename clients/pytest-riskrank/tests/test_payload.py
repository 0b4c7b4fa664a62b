"""What the plugin sends: one POST with every attempt of every test, in the
shape the riskrank API takes, recorded by a stand-in server."""

from __future__ import annotations

import subprocess
import textwrap
from typing import Any

import pytest
from riskrank_testing import Recorded, StartFake, answer_json, one_riskrank_line

COMMIT = "3f786850e387550fdab836ed7e6dc881de23001b"

OUTCOMES_SUITE = """
import time

import pytest


@pytest.fixture
def slow():
    time.sleep(0.05)
    yield
    time.sleep(0.05)


def test_pass(slow):
    time.sleep(0.05)


def test_fail():
    assert 1 == 2, "numbers differ"


def test_long_failure():
    assert False, "x" * 5000


def test_skip():
    pytest.skip("not today")


@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert 0


@pytest.mark.xfail(reason="fixed now")
def test_xpass():
    pass


@pytest.mark.xfail(reason="fixed now", strict=True)
def test_xpass_strict():
    pass


@pytest.fixture
def broken():
    raise RuntimeError("no database")


def test_setup_error(broken):
    pass


@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("cleanup failed")


def test_teardown_error(broken_teardown):
    pass


class TestGroup:
    @pytest.mark.parametrize("n", [1, 2])
    def test_param(self, n):
        assert n
"""


@pytest.fixture
def upload_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKRANK_TOKEN", "rr_test_token")
    monkeypatch.setenv("RISKRANK_REPO", "acme/widgets")
    monkeypatch.setenv("RISKRANK_COMMIT", COMMIT)


def the_upload(requests: list[Recorded]) -> dict[str, Any]:
    assert len(requests) == 1
    body: dict[str, Any] = requests[0].json()
    return body


def by_test(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {result["test"]: result for result in body["results"]}


@pytest.mark.usefixtures("upload_env")
def test_outcomes_durations_messages_and_the_request(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    fake = fake_riskrank()
    pytester.mkpydir("tests")
    pytester.path.joinpath("tests", "test_outcomes.py").write_text(OUTCOMES_SUITE)

    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")

    assert result.ret == 1
    assert one_riskrank_line(result) == "riskrank: uploaded 11 results (run 45)"
    [request] = fake.requests
    assert request.method == "POST"
    assert request.path == "/api/v1/repos/acme/widgets/runs"
    assert request.headers["Authorization"] == "Bearer rr_test_token"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("pytest-riskrank/")

    body = the_upload(fake.requests)
    assert body == {
        "commit": COMMIT,
        "branch": None,
        "run_key": None,
        "plan_id": None,
        "source": "pytest",
        "results": body["results"],
    }
    for entry in body["results"]:
        assert set(entry) == {"test", "outcome", "duration", "attempt", "file", "message"}
        assert isinstance(entry["duration"], float)
        assert 0 <= entry["duration"] < 10
        assert entry["attempt"] == 1
        assert entry["file"] == "tests/test_outcomes.py"

    results = by_test(body)
    prefix = "tests/test_outcomes.py::"
    assert list(results) == [
        prefix + name
        for name in [
            "test_pass",
            "test_fail",
            "test_long_failure",
            "test_skip",
            "test_xfail",
            "test_xpass",
            "test_xpass_strict",
            "test_setup_error",
            "test_teardown_error",
            "TestGroup::test_param[1]",
            "TestGroup::test_param[2]",
        ]
    ]
    outcomes = {name.removeprefix(prefix): entry["outcome"] for name, entry in results.items()}
    assert outcomes == {
        "test_pass": "passed",
        "test_fail": "failed",
        "test_long_failure": "failed",
        "test_skip": "skipped",
        "test_xfail": "skipped",
        "test_xpass": "passed",
        "test_xpass_strict": "failed",
        "test_setup_error": "error",
        "test_teardown_error": "error",
        "TestGroup::test_param[1]": "passed",
        "TestGroup::test_param[2]": "passed",
    }
    messages = {name.removeprefix(prefix): entry["message"] for name, entry in results.items()}
    assert messages["test_pass"] is None
    assert messages["test_fail"].startswith("AssertionError: numbers differ")
    assert "assert 1 == 2" in messages["test_fail"]
    assert len(messages["test_long_failure"]) == 1000
    assert messages["test_long_failure"].startswith("AssertionError: xxxx")
    assert messages["test_skip"] == "Skipped: not today"
    assert messages["test_xfail"] == "xfail: known bug"
    assert messages["test_xpass"] is None
    assert messages["test_xpass_strict"] == "[XPASS(strict)] fixed now"
    assert messages["test_setup_error"] == "RuntimeError: no database"
    assert messages["test_teardown_error"] == "RuntimeError: cleanup failed"

    # setup + call + teardown, each sleeping 0.05 s
    assert results[prefix + "test_pass"]["duration"] >= 0.15


@pytest.mark.usefixtures("upload_env")
def test_a_duplicate_upload_is_said_so(pytester: pytest.Pytester, fake_riskrank: StartFake) -> None:
    fake = fake_riskrank(answer_json(200, {"status": "duplicate", "run_id": 7}))
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")
    assert result.ret == 0
    assert one_riskrank_line(result) == "riskrank: duplicate upload of 1 result ignored (run 7)"


# A stand-in for pytest-rerunfailures that does what it does to the reports:
# the failing report of an earlier attempt is logged with the outcome "rerun",
# and the rest of that attempt is not logged.
FAKE_RERUNS_CONFTEST = """
import pytest
from _pytest.runner import runtestprotocol

RERUNS = 2


def pytest_report_teststatus(report):
    if report.outcome == "rerun":
        return "rerun", "R", "RERUN"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for attempt in range(RERUNS + 1):
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
        rerun = attempt < RERUNS and any(report.failed for report in reports)
        for report in reports:
            if rerun and report.failed:
                report.outcome = "rerun"
                item.ihook.pytest_runtest_logreport(report=report)
                break
            item.ihook.pytest_runtest_logreport(report=report)
        if not rerun:
            break
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
"""

FLAKY_SUITE = """
import pytest

calls = {"flaky": 0, "setup": 0}


def test_flaky():
    calls["flaky"] += 1
    assert calls["flaky"] >= 3, f"attempt {calls['flaky']}"


def test_always_fails():
    assert False, "broken for good"


@pytest.fixture
def shaky():
    calls["setup"] += 1
    if calls["setup"] == 1:
        raise RuntimeError("setup hiccup")


def test_shaky_setup(shaky):
    pass


def test_steady():
    pass
"""


def attempts(body: dict[str, Any]) -> list[tuple[str, int, str, str | None]]:
    return [
        (entry["test"], entry["attempt"], entry["outcome"], entry["message"])
        for entry in body["results"]
    ]


@pytest.mark.usefixtures("upload_env")
def test_reruns_are_earlier_attempts(pytester: pytest.Pytester, fake_riskrank: StartFake) -> None:
    fake = fake_riskrank()
    pytester.makeconftest(FAKE_RERUNS_CONFTEST)
    pytester.makepyfile(test_flaky=FLAKY_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")
    assert result.ret == 1
    assert one_riskrank_line(result) == "riskrank: uploaded 9 results (run 45)"
    assert_rerun_attempts(the_upload(fake.requests))


def assert_rerun_attempts(body: dict[str, Any]) -> None:
    assert attempts(body) == [
        ("test_flaky.py::test_flaky", 1, "failed", "AssertionError: attempt 1\nassert 1 >= 3"),
        ("test_flaky.py::test_flaky", 2, "failed", "AssertionError: attempt 2\nassert 2 >= 3"),
        ("test_flaky.py::test_flaky", 3, "passed", None),
        (
            "test_flaky.py::test_always_fails",
            1,
            "failed",
            "AssertionError: broken for good\nassert False",
        ),
        (
            "test_flaky.py::test_always_fails",
            2,
            "failed",
            "AssertionError: broken for good\nassert False",
        ),
        (
            "test_flaky.py::test_always_fails",
            3,
            "failed",
            "AssertionError: broken for good\nassert False",
        ),
        ("test_flaky.py::test_shaky_setup", 1, "error", "RuntimeError: setup hiccup"),
        ("test_flaky.py::test_shaky_setup", 2, "passed", None),
        ("test_flaky.py::test_steady", 1, "passed", None),
    ]


@pytest.mark.usefixtures("upload_env")
def test_reruns_of_pytest_rerunfailures(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    pytest.importorskip(
        "pytest_rerunfailures", reason="pytest-rerunfailures is not installed: its reruns untested"
    )
    fake = fake_riskrank()
    pytester.makepyfile(test_flaky=FLAKY_SUITE)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--reruns=2", f"--riskrank-url={fake.url}"
    )
    assert result.ret == 1
    assert one_riskrank_line(result) == "riskrank: uploaded 9 results (run 45)"
    assert_rerun_attempts(the_upload(fake.requests))


@pytest.mark.usefixtures("upload_env")
def test_xdist_workers_report_through_the_controller(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is not installed: the controller untested")
    fake = fake_riskrank()
    pytester.mkpydir("tests")
    pytester.path.joinpath("tests", "test_outcomes.py").write_text(OUTCOMES_SUITE)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", f"--riskrank-url={fake.url}"
    )
    assert result.ret == 1
    assert one_riskrank_line(result) == "riskrank: uploaded 11 results (run 45)"
    results = by_test(the_upload(fake.requests))
    assert len(results) == 11
    assert results["tests/test_outcomes.py::test_setup_error"]["outcome"] == "error"
    assert results["tests/test_outcomes.py::test_xfail"]["outcome"] == "skipped"
    assert results["tests/test_outcomes.py::test_pass"]["duration"] >= 0.15


def test_subtests_that_fail_fail_their_test(
    pytester: pytest.Pytester, fake_riskrank: StartFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not hasattr(pytest, "Subtests"):
        pytest.skip("subtests are built into pytest from 9.0 on")
    fake = fake_riskrank()
    monkeypatch.setenv("RISKRANK_TOKEN", "rr_test_token")
    monkeypatch.setenv("RISKRANK_REPO", "acme/widgets")
    monkeypatch.setenv("RISKRANK_COMMIT", COMMIT)
    pytester.makepyfile(
        test_sub="""
        def test_numbers(subtests):
            for n in range(3):
                with subtests.test(n=n):
                    assert n != 1
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")
    assert result.ret == 1
    one_riskrank_line(result)
    [entry] = the_upload(fake.requests)["results"]
    assert (entry["test"], entry["outcome"], entry["attempt"]) == (
        "test_sub.py::test_numbers",
        "failed",
        1,
    )


# --- where commit, branch, repository and run key come from -----------------


def test_github_actions_variables(
    pytester: pytest.Pytester, fake_riskrank: StartFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_riskrank()
    for name, value in {
        "RISKRANK_URL": fake.url,
        "RISKRANK_TOKEN": "rr_from_the_secret",
        "GITHUB_REPOSITORY": "octo-org/octo.repo",
        "GITHUB_SHA": COMMIT,
        "GITHUB_REF_NAME": "main",
        "GITHUB_HEAD_REF": "",
        "GITHUB_RUN_ID": "1658821493",
        "GITHUB_RUN_ATTEMPT": "2",
    }.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == 0
    assert one_riskrank_line(result) == "riskrank: uploaded 1 result (run 45)"
    [request] = fake.requests
    assert request.path == "/api/v1/repos/octo-org/octo.repo/runs"
    assert request.headers["Authorization"] == "Bearer rr_from_the_secret"
    body = request.json()
    assert (body["commit"], body["branch"], body["run_key"]) == (
        COMMIT,
        "main",
        "github-1658821493-2",
    )


def test_options_win_over_variables(
    pytester: pytest.Pytester, fake_riskrank: StartFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_riskrank()
    for name, value in {
        "RISKRANK_URL": "http://127.0.0.1:9",
        "RISKRANK_TOKEN": "rr_variable",
        "RISKRANK_REPO": "acme/variable",
        "GITHUB_SHA": "1" * 40,
        "CI_COMMIT_REF_NAME": "variable-branch",
        "CI_PIPELINE_ID": "77",
    }.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        f"--riskrank-url={fake.url}",
        "--riskrank-token=rr_option",
        "--riskrank-repo=acme/widgets",
        f"--riskrank-commit={COMMIT}",
        "--riskrank-branch=feature/x",
        "--riskrank-run-key=build-5",
    )
    assert result.ret == 0
    one_riskrank_line(result)
    [request] = fake.requests
    assert request.path == "/api/v1/repos/acme/widgets/runs"
    assert request.headers["Authorization"] == "Bearer rr_option"
    body = request.json()
    assert (body["commit"], body["branch"], body["run_key"]) == (COMMIT, "feature/x", "build-5")


def git(cwd: pytest.Pytester, *arguments: str) -> str:
    argv = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *arguments]
    completed = subprocess.run(  # noqa: S603  (git from PATH, fixed arguments, no shell)
        argv,
        cwd=cwd.path,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return completed.stdout.strip()


@pytest.mark.usefixtures("upload_env")
def test_commit_and_branch_from_git_in_the_rootdir(
    pytester: pytest.Pytester, fake_riskrank: StartFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RISKRANK_COMMIT")
    fake = fake_riskrank()
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    git(pytester, "init", "--quiet", "--initial-branch=trunk")
    git(pytester, "add", "test_one.py")
    git(pytester, "commit", "--quiet", "-m", "first")
    head = git(pytester, "rev-parse", "HEAD")

    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")

    assert result.ret == 0
    assert one_riskrank_line(result) == "riskrank: uploaded 1 result (run 45)"
    body = the_upload(fake.requests)
    assert (body["commit"], body["branch"]) == (head, "trunk")

    # A detached HEAD has a commit and no branch.
    git(pytester, "checkout", "--quiet", "--detach")
    pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")
    assert (fake.requests[1].json()["commit"], fake.requests[1].json()["branch"]) == (head, None)


@pytest.mark.usefixtures("upload_env")
def test_paths_are_relative_to_the_rootdir_not_the_invocation_dir(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    fake = fake_riskrank()
    pytester.makeini("[pytest]\n")
    sub = pytester.mkdir("pkg")
    sub.joinpath("test_inner.py").write_text(
        textwrap.dedent(
            """
            def test_inner():
                pass
            """
        )
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(sub)
        result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")
    assert result.ret == 0
    [entry] = the_upload(fake.requests)["results"]
    assert entry["file"] == "pkg/test_inner.py"
    assert entry["test"] == "pkg/test_inner.py::test_inner"
