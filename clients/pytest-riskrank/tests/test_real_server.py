"""The plugin against the real riskrank server, started here as processes
on the embedded SQLite default: what it stores is read back from the file.

The server is the `riskrank` executable beside the interpreter, started by
the clients' shared `real_server` fixture. Where it is not installed (someone
installed only the plugin) these tests are skipped, except under CI (CI=true),
which must test everything."""

from __future__ import annotations

import json
import re

import pytest
from riskrank_testing import RealServer, one_riskrank_line

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
