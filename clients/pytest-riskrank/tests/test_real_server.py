"""The plugin against the real riskrank server, started here as processes
on the embedded SQLite default: what it stores is read back from the file.

The server is the `riskrank` executable beside the interpreter, started by
the clients' shared `real_server` fixture. Where it is not installed (someone
installed only the plugin) these tests are skipped, except under CI (CI=true),
which must test everything."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from riskrank_testing import RealServer, one_riskrank_line, riskrank_lines

COMMIT = "9fceb02d0ae598e95dc970b74767f19372d61af8"

pytestmark = pytest.mark.slow

SUITE = """
import pytest


def test_passes():
    pass


def test_fails():
    assert "riskrank" == "riskrunk"


def test_skipped():
    pytest.skip("not here")


@pytest.mark.xfail(reason="known")
def test_expected_failure():
    raise ValueError("known")
"""
SUITE_NAMES = ("passes", "fails", "skipped", "expected_failure")


def _configure(monkeypatch: pytest.MonkeyPatch, server: RealServer, **overrides: str) -> None:
    values = {
        "RISKRANK_URL": server.url,
        "RISKRANK_TOKEN": server.token,
        "RISKRANK_REPO": "acme/widgets",
        "RISKRANK_COMMIT": COMMIT,
        "RISKRANK_BRANCH": "main",
        "RISKRANK_RUN_KEY": "build-1",
    }
    values.update(overrides)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_the_server_stores_the_run(
    pytester: pytest.Pytester, real_server: RealServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(monkeypatch, real_server)
    before = real_server.runs()
    pytester.makepyfile(test_suite=SUITE)

    # A fresh interpreter, as in CI: the plugin comes in through its entry point.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    assert result.ret == 1
    line = one_riskrank_line(result)
    uploaded = re.fullmatch(r"riskrank: uploaded 4 results \(run (\d+)\)", line)
    assert uploaded, line
    runs = real_server.runs()
    assert len(runs) == len(before) + 1
    run_id, source, report, status = runs[-1]
    assert run_id == int(uploaded.group(1))
    assert source == "pytest"
    assert status in {"pending", "ingested"}
    body = json.loads(report)
    assert (body["commit"], body["branch"], body["run_key"], body["source"]) == (
        COMMIT,
        "main",
        "build-1",
        "pytest",
    )
    assert [
        (entry["test"], entry["outcome"], entry["attempt"], entry["file"])
        for entry in body["results"]
    ] == [
        ("test_suite.py::test_passes", "passed", 1, "test_suite.py"),
        ("test_suite.py::test_fails", "failed", 1, "test_suite.py"),
        ("test_suite.py::test_skipped", "skipped", 1, "test_suite.py"),
        ("test_suite.py::test_expected_failure", "skipped", 1, "test_suite.py"),
    ]
    messages = {entry["test"]: entry["message"] for entry in body["results"]}
    assert messages["test_suite.py::test_passes"] is None
    assert "riskrunk" in messages["test_suite.py::test_fails"]
    assert messages["test_suite.py::test_skipped"] == "Skipped: not here"


@pytest.mark.parametrize(
    ("overrides", "answer"),
    [
        ({"RISKRANK_TOKEN": "rr_not-a-real-token"}, "HTTP 401"),
        ({"RISKRANK_REPO": "acme/gadgets"}, "HTTP 404"),
    ],
    ids=["invalid-token", "token-of-another-repository"],
)
def test_a_refusal_of_the_server_leaves_the_run_alone(
    pytester: pytest.Pytester,
    real_server: RealServer,
    monkeypatch: pytest.MonkeyPatch,
    overrides: dict[str, str],
    answer: str,
) -> None:
    _configure(monkeypatch, real_server, **overrides)
    before = real_server.runs()
    pytester.makepyfile(test_suite=SUITE)

    result = pytester.runpytest("-p", "no:cacheprovider")

    assert result.ret == 1
    line = one_riskrank_line(result)
    assert line.startswith(f"riskrank: {real_server.url} answered {answer}: "), line
    assert line.endswith("; 4 results not uploaded")
    assert real_server.runs() == before


def test_an_unknown_repository(
    pytester: pytest.Pytester, real_server: RealServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(monkeypatch, real_server, RISKRANK_REPO="acme/nothing")
    pytester.makepyfile(test_suite="def test_one():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == 0
    line = one_riskrank_line(result)
    assert line == (
        f"riskrank: {real_server.url} answered HTTP 404: "
        "repository acme/nothing is not registered, or the token is not for it; "
        "1 result not uploaded"
    )


# --- the plan's summary for the CI job ($GITHUB_STEP_SUMMARY) ------------------


def _client_summary(
    server: RealServer, tmp_path: Path, token: str, repository: str, tests: list[str] | None
) -> str:
    """What the light client's `plan --summary` writes for the same request."""
    target = tmp_path / "client-summary.md"
    arguments = ["--mode", "order", "--summary", str(target)]
    if tests is not None:
        arguments += ["--tests-file", "-"]
    completed = subprocess.run(  # noqa: S603  (the client beside this interpreter, no shell)
        [sys.executable, "-m", "riskrank_client", "plan", repository, COMMIT, *arguments],
        input="".join(f"{test}\n" for test in tests or []),
        env={**os.environ, "RISKRANK_URL": server.url, "RISKRANK_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode in (0, 3), completed.stderr
    return target.read_text()


def test_the_plan_summary_goes_to_the_job_summary(
    pytester: pytest.Pytester,
    real_server: RealServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    step_summary = tmp_path / "step_summary.md"
    step_summary.write_text("an earlier step's\n")
    _configure(
        monkeypatch,
        real_server,
        RISKRANK_TOKEN=real_server.other_repository_token,
        RISKRANK_REPO="acme/gadgets",
        RISKRANK_MODE="order",
        GITHUB_STEP_SUMMARY=str(step_summary),
    )
    pytester.makepyfile(test_suite=SUITE)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    assert result.ret == 1
    lines = riskrank_lines(result)
    assert lines[0].startswith("riskrank: plan "), lines
    assert len(lines) == 2, lines
    assert lines[1].startswith("riskrank: uploaded 4 results"), lines
    written = step_summary.read_text()
    assert written.startswith(
        f"an earlier step's\n### riskrank plan for `{COMMIT[:12]}`\n\n**4 of 4 tests selected**"
    ), written
    # The light client's Markdown, for the same plan, byte for byte.
    tests = [f"test_suite.py::test_{name}" for name in SUITE_NAMES]
    expected = _client_summary(
        real_server, tmp_path, real_server.other_repository_token, "acme/gadgets", tests
    )
    assert written == "an earlier step's\n" + expected


def test_a_summary_that_cannot_be_written_is_one_warning(
    pytester: pytest.Pytester,
    real_server: RealServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-such-directory" / "step_summary.md"
    _configure(
        monkeypatch,
        real_server,
        RISKRANK_TOKEN=real_server.other_repository_token,
        RISKRANK_REPO="acme/gadgets",
        RISKRANK_MODE="order",
        GITHUB_STEP_SUMMARY=str(missing),
    )
    pytester.makepyfile(test_suite=SUITE)

    result = pytester.runpytest("-p", "no:cacheprovider")

    assert result.ret == 1  # test_fails: the tests decide, as without a summary
    result.assert_outcomes(passed=1, failed=1, skipped=1, xfailed=1)
    lines = riskrank_lines(result)
    assert lines[0].startswith("riskrank: plan "), lines
    assert lines[1] == (
        f"riskrank: could not write the summary to {missing}: No such file or directory"
    )
    assert lines[2].startswith("riskrank: uploaded 4 results"), lines
    assert not missing.parent.exists()


@pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="needs pytest-xdist")
def test_under_xdist_the_controller_writes_the_summary_once(
    pytester: pytest.Pytester,
    real_server: RealServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # acme/tools knows no test: the controller (which sends no test list)
    # gets a plan for the whole suite, and the summary says why.
    step_summary = tmp_path / "step_summary.md"
    _configure(
        monkeypatch,
        real_server,
        RISKRANK_TOKEN=real_server.tools_token,
        RISKRANK_REPO="acme/tools",
        RISKRANK_MODE="order",
        GITHUB_STEP_SUMMARY=str(step_summary),
    )
    pytester.makepyfile(test_suite=SUITE)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")

    assert result.ret == 1
    result.stdout.fnmatch_lines(["*1 failed, 1 passed, 1 skipped, 1 xfailed*"])
    written = step_summary.read_text()
    assert written.startswith(f"### riskrank: the whole suite runs\n\n`{COMMIT[:12]}`: ")
    expected = _client_summary(real_server, tmp_path, real_server.tools_token, "acme/tools", None)
    assert written == expected
