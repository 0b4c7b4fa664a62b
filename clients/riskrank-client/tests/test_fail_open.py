"""The commands against a stand-in riskrank (answering as told) and a dead
port: what they send, and that they never break a build. upload and event
warn in one line and exit 0 (1 with --strict); plan exits 3, "run the whole
suite", with nothing on stdout in the list format."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
from riskrank_testing import (
    WEBHOOK_SECRET,
    Answer,
    StartFake,
    answer_json,
    free_port,
    plan_answer,
)
from running import JUNIT_REPORT, checkout, client

SHA = "c" * 40
GITHUB = {"GITHUB_REPOSITORY": "acme/widgets", "GITHUB_SHA": SHA, "GITHUB_HEAD_REF": "topic"}
SERVER_ERROR = Answer(status=500, body=b"Internal Server Error", content_type="text/plain")
GARBAGE = Answer(status=200, body=b"<html>a proxy's login page</html>", content_type="text/html")


def _env(url: str, **more: str) -> dict[str, str]:
    return {"RISKRANK_URL": url, "RISKRANK_TOKEN": "rr_test", **GITHUB, **more}


def _reports(tmp_path: Path) -> list[str]:
    xml = tmp_path / "unit.xml"
    xml.write_text(JUNIT_REPORT)
    packed = tmp_path / "results.json.gz"
    packed.write_bytes(gzip.compress(b'{"commit": "x", "results": []}'))
    return [str(xml), str(packed)]


# --- upload ----------------------------------------------------------------------


def test_upload_sends_each_report_as_it_is(fake_riskrank: StartFake, tmp_path: Path) -> None:
    fake = fake_riskrank(answer_json(202, {"status": "queued", "run_id": 7, "tests": 3}))
    env = _env(fake.url, GITHUB_RUN_ID="12", GITHUB_RUN_ATTEMPT="1")
    result = client("upload", *_reports(tmp_path), "--plan-id", "17", cwd=tmp_path, env=env)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        f"riskrank: uploaded {tmp_path / 'unit.xml'}: run 7 (queued, 3 tests)",
        f"riskrank: uploaded {tmp_path / 'results.json.gz'}: run 7 (queued, 3 tests)",
    ]
    xml, packed = fake.requests
    query = f"?commit={SHA}&branch=topic&run_key=github-12-1&plan_id=17"
    assert xml.path == f"/api/v1/repos/acme/widgets/runs{query}"
    assert (xml.headers["Content-Type"], xml.headers["Authorization"]) == (
        "application/xml",
        "Bearer rr_test",
    )
    assert xml.body == JUNIT_REPORT.encode()
    assert (packed.headers["Content-Type"], packed.headers["Content-Encoding"]) == (
        "application/json",
        "gzip",
    )
    assert xml.headers["User-Agent"] == "riskrank-client/0.1.0"


def test_upload_to_a_dead_port_is_one_warning(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    arguments = ["upload", *_reports(tmp_path), "--retries", "1"]
    result = client(*arguments, cwd=tmp_path, env=_env(url))
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == (
        f"riskrank: cannot reach {url} (Connection refused); 2 reports not uploaded\n"
    )
    assert client(*arguments, "--strict", cwd=tmp_path, env=_env(url)).returncode == 1


def test_upload_retries_a_server_error_then_warns(fake_riskrank: StartFake, tmp_path: Path) -> None:
    fake = fake_riskrank(SERVER_ERROR)
    report = _reports(tmp_path)[0]
    result = client("upload", report, "--retries", "1", cwd=tmp_path, env=_env(fake.url))
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == (
        f"riskrank: {report} not uploaded: {fake.url} answered HTTP 500: Internal Server Error\n"
    )
    assert len(fake.requests) == 2


def test_upload_of_an_unreadable_report(fake_riskrank: StartFake, tmp_path: Path) -> None:
    fake = fake_riskrank()
    missing = tmp_path / "nothing.xml"
    result = client("upload", str(missing), cwd=tmp_path, env=_env(fake.url))
    assert (result.returncode, result.stderr) == (
        0,
        f"riskrank: cannot read {missing}: No such file or directory\n",
    )
    assert fake.requests == []


def test_upload_usage_errors_exit_2(tmp_path: Path) -> None:
    assert client("upload", cwd=tmp_path).returncode == 2
    assert client("upload", "a.xml", "--retries", "9", cwd=tmp_path).returncode == 2
    assert client("upload", "a.xml", "--timeout", "0", cwd=tmp_path).returncode == 2


# --- plan ------------------------------------------------------------------------

TESTS = ["t.py::test_d", "t.py::test_b", "t.py::test_a", "t.py::test_c"]
READY = plan_answer(
    [(TESTS[0], True), (TESTS[1], True), (TESTS[2], False), (TESTS[3], False)],
    commit=SHA,
    run_all=False,
)


def test_plan_asks_with_the_options_and_lists_the_selection(
    fake_riskrank: StartFake, tmp_path: Path
) -> None:
    fake = fake_riskrank(answer_json(200, READY))
    tests = tmp_path / "collected.txt"
    tests.write_text("# ids\nt.py::test_a\n\n t.py::test_b \nt.py::test_c\nt.py::test_d\n")
    result = client(
        "plan", "--mode", "Fraction", "--budget", "0.5", "--by", "duration", "--shard", "1/2",
        "--tests-file", str(tests), cwd=tmp_path, env=_env(fake.url),
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "t.py::test_d\nt.py::test_b\n"
    [asked] = fake.requests
    assert asked.path == f"/api/v1/repos/acme/widgets/plans/{SHA}"
    assert asked.json() == {
        "mode": "fraction",
        "budget": 0.5,
        "by": "duration",
        "shard": "1/2",
        "branch": "topic",
        "tests": ["t.py::test_a", "t.py::test_b", "t.py::test_c", "t.py::test_d"],
    }


def test_plan_junit_writes_the_shard_only_when_there_is_one(
    fake_riskrank: StartFake, tmp_path: Path
) -> None:
    def shard_property(answer: dict[str, object]) -> list[str | None]:
        fake = fake_riskrank(answer_json(200, answer))
        result = client("plan", "--format", "junit", cwd=tmp_path, env=_env(fake.url))
        assert result.returncode == 0, result.stderr
        root = ElementTree.fromstring(result.stdout.split("\n", 1)[1])  # noqa: S314  (ours)
        suite = root.find("testsuite")
        assert suite is not None
        assert [case.get("name") for case in suite.iter("testcase")] == ["test_d", "test_b"]
        return [prop.get("value") for prop in suite.iter("property") if prop.get("name") == "shard"]

    assert shard_property(READY) == []
    assert shard_property({**READY, "shard": "2/3"}) == ["2/3"]


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (
            answer_json(
                200,
                plan_answer(
                    [],
                    status="no_tests",
                    run_all=True,
                    message="riskrank knows no test of this repository yet and no test list "
                    "was sent: run the whole suite",
                ),
            ),
            "run the whole suite: riskrank knows no test of this repository yet and no test "
            "list was sent",
        ),
        # A server from before run_all: a plan of no test is not "run nothing".
        (
            answer_json(200, {"plan_id": 3, "status": "ready", "total": 0, "tests": []}),
            "run the whole suite: riskrank cannot name the tests to run (status ready)",
        ),
        (
            answer_json(
                200,
                plan_answer(
                    [(TESTS[0], True)],
                    status="fallback",
                    run_all=True,
                    full_run=True,
                    message="scoring failed: no history",
                ),
            ),
            "run the whole suite: scoring failed: no history",
        ),
    ],
    ids=["run-all", "total-0-without-run-all", "fallback"],
)
def test_plan_run_all_exits_3_with_nothing_listed(
    fake_riskrank: StartFake, tmp_path: Path, answer: Answer, why: str
) -> None:
    fake = fake_riskrank(answer)
    result = client("plan", cwd=tmp_path, env=_env(fake.url))
    assert (result.returncode, result.stdout, result.stderr) == (3, "", f"riskrank: {why}\n")
    as_json = client("plan", "--format", "json", cwd=tmp_path, env=_env(fake.url))
    assert as_json.returncode == 3
    assert json.loads(as_json.stdout) == json.loads(answer.body)


@pytest.mark.parametrize(
    ("answer", "said", "code"),
    [
        (SERVER_ERROR, "{url} answered HTTP 500: Internal Server Error", 3),
        (GARBAGE, "unexpected answer from {url} (HTTP 200, not JSON)", 3),
        (answer_json(200, ["a", "list"]), "unexpected plan from {url} (not a JSON object)", 3),
        (answer_json(401, {"detail": "no token"}), "{url} answered HTTP 401: no token", 3),
        (answer_json(400, {"detail": "bad budget"}), "{url} answered HTTP 400: bad budget", 2),
        (
            answer_json(422, {"detail": "branch: must be at most 255 characters"}),
            "{url} answered HTTP 422: branch: must be at most 255 characters",
            2,
        ),
    ],
    ids=["500", "not-json", "not-a-plan", "401", "400", "422"],
)
def test_plan_errors_run_the_whole_suite(
    fake_riskrank: StartFake, tmp_path: Path, answer: Answer, said: str, code: int
) -> None:
    fake = fake_riskrank(answer)
    result = client("plan", cwd=tmp_path, env=_env(fake.url))
    assert (result.returncode, result.stdout) == (code, "")
    assert result.stderr == f"riskrank: {said.format(url=fake.url)}; run the whole suite\n"


def test_plan_with_riskrank_unreachable_exits_3(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for output in ("list", "json", "junit"):
        result = client("plan", "--format", output, cwd=tmp_path, env=_env(url))
        assert (result.returncode, result.stdout) == (3, "")
        assert result.stderr == (
            f"riskrank: cannot reach {url} (Connection refused); run the whole suite\n"
        )


@pytest.mark.parametrize(
    ("arguments", "env", "said"),
    [
        ([], {"RISKRANK_URL": ""}, "missing --url/RISKRANK_URL"),
        (["acme/widgets"], {"GITHUB_SHA": ""}, "missing SHA (or RISKRANK_COMMIT)"),
        (["widgets", SHA], {}, "the repository 'widgets' is not OWNER/NAME"),
        (["acme/widgets", "main"], {}, "'main' is not a commit id"),
        (["--shard", "3/2"], {}, "the shard '3/2' is not I/N with 1 <= I <= N"),
        (["--tests-file", "missing.txt"], {}, "cannot read missing.txt"),
        ([], {"RISKRANK_BUDGET": "lots"}, "the budget 'lots' is not a number"),
    ],
    ids=["no-url", "no-commit", "not-owner-name", "not-a-commit", "shard", "tests-file", "budget"],
)
def test_plan_usage_errors_exit_2(
    fake_riskrank: StartFake,
    tmp_path: Path,
    arguments: list[str],
    env: dict[str, str],
    said: str,
) -> None:
    fake = fake_riskrank(answer_json(200, READY))
    result = client("plan", *arguments, cwd=tmp_path, env=_env(fake.url, **env))
    assert (result.returncode, result.stdout) == (2, "")
    [line] = result.stderr.splitlines()
    assert line.startswith("riskrank: "), line
    assert said in line, line
    assert line.endswith("; run the whole suite"), line
    assert fake.requests == []


def test_plan_argparse_usage_errors_exit_2(tmp_path: Path) -> None:
    assert client("plan", "--mode", "everything", cwd=tmp_path).returncode == 2
    assert client("plan", "--format", "csv", cwd=tmp_path).returncode == 2


# --- event -----------------------------------------------------------------------


def test_event_is_signed_and_carries_the_build_as_delivery(
    fake_riskrank: StartFake, tmp_path: Path
) -> None:
    fake = fake_riskrank(answer_json(202, {"status": "queued", "event_id": 4}))
    first, second = checkout(tmp_path / "checkout")
    env = {
        "RISKRANK_URL": fake.url,
        "RISKRANK_SECRET": WEBHOOK_SECRET,
        "CI_PROJECT_PATH": "group/sub/tools",
        "CI_COMMIT_REF_NAME": "main",
        "CI_PIPELINE_ID": "321",
    }
    result = client("event", cwd=tmp_path / "checkout", env=env)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"riskrank: event 4 for {second} (queued, 5 changed files)\n"
    [sent] = fake.requests
    assert sent.path == "/webhooks/generic"
    expected = hmac.new(WEBHOOK_SECRET.encode(), sent.body, hashlib.sha256).hexdigest()
    assert sent.headers["X-Riskrank-Signature-256"] == f"sha256={expected}"
    assert sent.headers["X-Riskrank-Delivery"] == "gitlab-321"
    assert "Authorization" not in sent.headers
    body = sent.json()
    assert body == {
        "repository": "group/sub/tools",
        "commit": second,
        "branch": "main",
        "parents": [first],
        "changed_files": [
            {
                "path": "docs.md",
                "status": "removed",
                "additions": 0,
                "deletions": 1,
                "hunks": [hunk(1, 1, 0, 0)],
            },
            {"path": "logo.bin", "status": "modified"},  # binary: no hunks
            {
                "path": "src/new.py",
                "status": "added",
                "additions": 1,
                "deletions": 0,
                "hunks": [hunk(0, 0, 1, 1)],
            },
            {
                "path": "src/reader.py",
                "status": "modified",
                "additions": 3,
                "deletions": 1,
                "hunks": [hunk(2, 1, 2, 3, "read")],
            },
            {
                "path": "src/writer.py",
                "status": "renamed",
                "old_path": "src/out.py",
                "additions": 0,
                "deletions": 0,
                "hunks": [],
            },
        ],
        "message": "Read the header once\n\nAnd say why.",
        "author": "Ada Lovelace",
        "time": "2024-05-01T12:00:00+00:00",
    }


def hunk(
    old_start: int, old_lines: int, new_start: int, new_lines: int, symbol: str | None = None
) -> dict[str, object]:
    return {
        "old_start": old_start,
        "old_lines": old_lines,
        "new_start": new_start,
        "new_lines": new_lines,
        "symbol": symbol,
    }


def test_event_dry_run_prints_the_first_commit(tmp_path: Path) -> None:
    first, _second = checkout(tmp_path / "checkout")
    result = client(
        "event", "--dry-run", "--repo", "acme/tools", "--commit", first[:10],
        cwd=tmp_path / "checkout",
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    body = json.loads(result.stdout)
    assert (body["commit"], "parents" in body) == (first, False)
    assert sorted(change["path"] for change in body["changed_files"]) == [
        "docs.md",
        "logo.bin",
        "src/out.py",
        "src/reader.py",
    ]
    assert {change["status"] for change in body["changed_files"]} == {"added"}


def test_event_to_a_dead_port_is_one_warning(tmp_path: Path) -> None:
    _first, second = checkout(tmp_path / "checkout")
    url = f"http://127.0.0.1:{free_port()}"
    env = {"RISKRANK_URL": url, "RISKRANK_SECRET": WEBHOOK_SECRET, "RISKRANK_REPO": "acme/tools"}
    arguments = ["event", "--retries", "0"]
    result = client(*arguments, cwd=tmp_path / "checkout", env=env)
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == (
        f"riskrank: no event sent for {second}: cannot reach {url} (Connection refused)\n"
    )
    assert client(*arguments, "--strict", cwd=tmp_path / "checkout", env=env).returncode == 1


def test_event_outside_git_is_one_warning(tmp_path: Path) -> None:
    env = {"RISKRANK_URL": "http://127.0.0.1:1", "RISKRANK_SECRET": "s", "RISKRANK_REPO": "a/b"}
    result = client("event", cwd=tmp_path, env=env)
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == "riskrank: no event sent, missing --commit/RISKRANK_COMMIT\n"
    assert client("event", "--strict", cwd=tmp_path, env=env).returncode == 1
