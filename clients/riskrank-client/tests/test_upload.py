"""`riskrank-client upload` as a CI step runs it: against the real riskrank
server (what it stored is read back from its SQLite file), a port nobody
listens on and a server that never answers. It never breaks the build: one
plain warning line per problem on stderr and exit 0; exit 1 only with --strict.

(These checks were the server's `riskrank upload` tests before the command
moved to the light client.)"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from riskrank_testing import (
    TOKEN_PATTERN,
    Answer,
    RealServer,
    Recorded,
    StartFake,
    admin,
    free_port,
)
from running import JUNIT_REPORT, client

SECOND_REPORT = b"""<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="integration" tests="2">
    <testcase classname="tests.test_api" file="tests/test_api.py" name="test_get" time="1.5"/>
    <testcase classname="tests.test_api" file="tests/test_api.py" name="test_put" time="2.5"/>
  </testsuite>
</testsuites>
"""
UNKNOWN_TOKEN = "rr_" + "x" * 43
NOT_VALID = "answered HTTP 401: the token is not valid (unknown or revoked)"


def _report(directory: Path, name: str = "junit.xml") -> Path:
    report = directory / name
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(JUNIT_REPORT)
    return report


def _stored(server: RealServer, sha: str) -> list[tuple[Any, ...]]:
    """What the server keeps of each run of `sha`: (id, repository, source,
    status, content type, report, its sha256, run key, branch)."""
    return server.query(
        "SELECT r.id, p.slug, r.source, r.status, r.content_type, r.report, r.report_sha256, "
        "r.run_key, c.branch FROM test_runs r JOIN commits c ON c.id = r.commit_id "
        "JOIN repositories p ON p.id = r.repository_id WHERE c.sha = ? ORDER BY r.id",
        sha,
    )


def _to_widgets(server: RealServer, token: str | None = None) -> dict[str, str]:
    return {
        "RISKRANK_URL": server.url,
        "RISKRANK_TOKEN": token or server.token,
        "RISKRANK_REPO": "acme/widgets",
    }


def _revoked_token(server: RealServer) -> str:
    """A token of acme/widgets, revoked, as an operator does it."""
    run = {"env": server.env, "cwd": server.home}
    found = TOKEN_PATTERN.search(
        admin("token", "create", "--repo", "acme/widgets", "--name", "leaked", **run)
    )
    assert found, "no token in the output of `riskrank token create`"
    listed = admin("token", "list", "--repo", "acme/widgets", "--json", **run)
    [token_id] = [entry["id"] for entry in json.loads(listed) if entry["name"] == "leaked"]
    admin("token", "revoke", str(token_id), "--repo", "acme/widgets", **run)
    return found.group(0)


# --- against the real server --------------------------------------------------


@pytest.mark.slow
def test_reports_are_stored_and_the_same_report_again_is_a_duplicate(
    real_server: RealServer, tmp_path: Path
) -> None:
    plain = _report(tmp_path)
    zipped = tmp_path / "integration.xml.gz"
    zipped.write_bytes(gzip.compress(SECOND_REPORT))
    commit = "0123456789abcdef0123456789abcdef01234567"
    env = _to_widgets(real_server)

    first = client(
        "upload", str(plain), str(zipped), "--commit", commit, "--branch", "main",
        "--run-key", "b-7", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert (first.returncode, first.stderr) == (0, ""), first.stderr
    uploaded = re.findall(
        r"^riskrank: uploaded (\S+): run (\d+) \((\w+), (\d+) tests\)$", first.stdout, re.MULTILINE
    )
    assert len(first.stdout.splitlines()) == 2, first.stdout
    assert [(path, status, tests) for path, _run, status, tests in uploaded] == [
        (str(plain), "queued", "3"),
        (str(zipped), "queued", "2"),
    ]
    run_ids = [int(run) for _path, run, _status, _tests in uploaded]

    # No worker runs here: each report is stored as sent (the gzipped one
    # inflated) and waits, pending, for its ingestion.
    reports = (JUNIT_REPORT.encode(), SECOND_REPORT)
    assert _stored(real_server, commit) == [
        (
            run_id,
            "acme/widgets",
            "junit",
            "pending",
            "application/xml",
            report,
            digest,
            "b-7",
            "main",
        )
        for run_id, report, digest in zip(
            run_ids,
            reports,
            [hashlib.sha256(report).hexdigest() for report in reports],
            strict=True,
        )
    ]

    again = client("upload", str(plain), "--commit", commit, cwd=tmp_path, env=env)
    assert (again.returncode, again.stderr) == (0, ""), again.stderr
    assert again.stdout == f"riskrank: uploaded {plain}: run {run_ids[0]} (duplicate, 3 tests)\n"
    assert [run[0] for run in _stored(real_server, commit)] == run_ids


@pytest.mark.slow
def test_a_refused_upload_warns_once_stores_nothing_and_fails_only_when_strict(
    real_server: RealServer, tmp_path: Path
) -> None:
    report = _report(tmp_path)
    commit = "1111111111111111111111111111111111111111"
    arguments = ["upload", str(report), "--commit", commit]
    refused = f"riskrank: {report} not uploaded: {real_server.url} {NOT_VALID}\n"

    for token in (UNKNOWN_TOKEN, _revoked_token(real_server)):
        env = _to_widgets(real_server, token)
        lenient = client(*arguments, cwd=tmp_path, env=env)
        assert (lenient.returncode, lenient.stdout, lenient.stderr) == (0, "", refused)
        strict = client(*arguments, "--strict", cwd=tmp_path, env=env)
        assert (strict.returncode, strict.stdout, strict.stderr) == (1, "", refused)
    assert _stored(real_server, commit) == []


@pytest.mark.slow
def test_a_warning_names_a_report_with_brackets_in_one_line(
    real_server: RealServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in a CI log: stderr is no terminal (captured) and COLUMNS is not set.
    monkeypatch.delenv("COLUMNS", raising=False)
    # A matrix job's report (Gradle names them so); markup would eat "[linux]".
    report = _report(tmp_path / "build" / "test-results", "TEST-org.example.WidgetTest[linux].xml")
    commit = "3333333333333333333333333333333333333333"
    env = _to_widgets(real_server, UNKNOWN_TOKEN)
    result = client("upload", str(report), "--commit", commit, cwd=tmp_path, env=env)
    warning = f"riskrank: {report} not uploaded: {real_server.url} {NOT_VALID}"
    assert len(warning) > 80  # longer than a terminal line: a wrapping printer would split it
    assert (result.returncode, result.stdout, result.stderr) == (0, "", warning + "\n")
    assert _stored(real_server, commit) == []


@pytest.mark.slow
def test_a_missing_report_does_not_keep_the_others_from_being_sent(
    real_server: RealServer, tmp_path: Path
) -> None:
    report = _report(tmp_path)
    missing = tmp_path / "not-written.xml"
    commit = "2222222222222222222222222222222222222222"
    # Set up as in a CI job: everything from the environment.
    env = {**_to_widgets(real_server), "RISKRANK_COMMIT": commit}
    cannot_read = f"riskrank: cannot read {missing}: No such file or directory\n"

    lenient = client("upload", str(missing), str(report), cwd=tmp_path, env=env)
    assert (lenient.returncode, lenient.stderr) == (0, cannot_read)
    found = re.fullmatch(
        rf"riskrank: uploaded {re.escape(str(report))}: run (\d+) \(queued, 3 tests\)\n",
        lenient.stdout,
    )
    assert found, lenient.stdout

    strict = client("upload", str(missing), str(report), "--strict", cwd=tmp_path, env=env)
    assert (strict.returncode, strict.stderr) == (1, cannot_read)
    assert strict.stdout == f"riskrank: uploaded {report}: run {found[1]} (duplicate, 3 tests)\n"
    assert [run[0] for run in _stored(real_server, commit)] == [int(found[1])]


# --- without riskrank ---------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        (
            {
                "RISKRANK_TOKEN": "rr_test",
                "RISKRANK_REPO": "acme/widgets",
                "RISKRANK_COMMIT": "c" * 40,
            },
            "--url/RISKRANK_URL",
        ),
        # Outside git and any CI: nothing to go on.
        (
            {},
            "--url/RISKRANK_URL, --token/RISKRANK_TOKEN, --repo/RISKRANK_REPO, "
            "--commit/RISKRANK_COMMIT",
        ),
    ],
    ids=["no-url", "nothing"],
)
def test_missing_settings_are_listed_in_one_warning(
    tmp_path: Path, env: dict[str, str], missing: str
) -> None:
    report = str(_report(tmp_path))
    warning = f"riskrank: nothing uploaded, missing {missing}\n"
    lenient = client("upload", report, cwd=tmp_path, env=env)
    assert (lenient.returncode, lenient.stdout, lenient.stderr) == (0, "", warning)
    strict = client("upload", report, "--strict", cwd=tmp_path, env=env)
    assert (strict.returncode, strict.stdout, strict.stderr) == (1, "", warning)


@dataclass(frozen=True)
class Timed:
    result: subprocess.CompletedProcess[str]
    started: float  # time.monotonic() before and after the command
    ended: float

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def _timed_upload(url: str, tmp_path: Path, *options: str) -> Timed:
    """One report to `url` with one retry (two tries), timed from the test."""
    env = {"RISKRANK_TOKEN": "rr_test", "RISKRANK_REPO": "acme/widgets"}
    started = time.monotonic()
    result = client(
        "upload", str(_report(tmp_path)), "--url", url, "--commit", "c" * 40,
        "--retries", "1", *options, cwd=tmp_path, env=env,
    )  # fmt: skip
    return Timed(result, started, time.monotonic())


def test_a_dead_port_is_one_warning_at_once(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    warning = f"riskrank: cannot reach {url} (Connection refused); 1 report not uploaded\n"
    for strict, code in (("--no-strict", 0), ("--strict", 1)):
        # A refused connection is not waited out: both tries and the 0.5 s
        # pause between them take far less than one 10 s timeout.
        ran = _timed_upload(url, tmp_path, "--timeout", "10", strict)
        assert (ran.result.returncode, ran.result.stdout, ran.result.stderr) == (code, "", warning)
        assert ran.seconds < 8, ran.seconds


def test_a_server_that_never_answers_is_one_warning_within_the_time_bounds(
    fake_riskrank: StartFake, tmp_path: Path
) -> None:
    for strict, code in (("--no-strict", 0), ("--strict", 1)):
        arrivals: list[float] = []

        def silent(_request: Recorded, _number: int, arrivals: list[float] = arrivals) -> Answer:
            arrivals.append(time.monotonic())
            return Answer(delay=600)  # released when the test ends

        fake = fake_riskrank(silent)
        ran = _timed_upload(fake.url, tmp_path, "--timeout", "1", strict)
        warning = f"riskrank: no answer from {fake.url} within 1s; 1 report not uploaded\n"
        assert (ran.result.returncode, ran.result.stdout, ran.result.stderr) == (code, "", warning)
        # --retries 1: two tries. The first waits out its 1 s, then a 0.5 s
        # pause; the second gets what is left of the call's 2.5 s, a little
        # under 1 s. (The upper bounds allow for a busy machine.)
        first, second = arrivals
        assert 1.4 <= second - first < 1.5 + 2.5, arrivals
        assert 0.8 <= ran.ended - second < 1.0 + 3.0, (ran.ended, arrivals)
        assert 2.3 <= ran.seconds < 2.5 + 7.5, ran.seconds
