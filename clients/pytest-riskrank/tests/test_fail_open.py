"""Whatever riskrank does, pytest's exit code stays what the tests made it,
and exactly one `riskrank:` line says what happened."""

from __future__ import annotations

import time

import pytest
from riskrank_testing import (
    FAILING_SUITE,
    PASSING_SUITE,
    Answer,
    Recorded,
    StartFake,
    answer_json,
    free_port,
    one_riskrank_line,
)

SUITES = pytest.mark.parametrize(
    ("suite", "exit_code"), [(PASSING_SUITE, 0), (FAILING_SUITE, 1)], ids=["passing", "failing"]
)


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything but the URL, from the environment as on a CI machine."""
    monkeypatch.setenv("RISKRANK_TOKEN", "rr_test_token")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/widgets")
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)


@SUITES
@pytest.mark.usefixtures("configured")
def test_nothing_listening(pytester: pytest.Pytester, suite: str, exit_code: int) -> None:
    pytester.makepyfile(test_suite=suite)
    url = f"http://127.0.0.1:{free_port()}"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={url}")
    assert result.ret == exit_code
    assert one_riskrank_line(result) == (
        f"riskrank: cannot reach {url} (Connection refused); 2 results not uploaded"
    )


@SUITES
@pytest.mark.usefixtures("configured")
def test_a_server_slower_than_the_timeout(
    pytester: pytest.Pytester, fake_riskrank: StartFake, suite: str, exit_code: int
) -> None:
    fake = fake_riskrank(Answer(delay=30))
    pytester.makepyfile(test_suite=suite)
    started = time.monotonic()
    result = pytester.runpytest(
        "-p", "no:cacheprovider", f"--riskrank-url={fake.url}", "--riskrank-timeout=1"
    )
    elapsed = time.monotonic() - started
    assert result.ret == exit_code
    assert one_riskrank_line(result) == (
        f"riskrank: no answer from {fake.url} within 1s; 2 results not uploaded"
    )
    assert elapsed < 1 + 5  # the timeout bounds the whole upload; no retry after it
    assert len(fake.requests) == 1


@SUITES
@pytest.mark.usefixtures("configured")
def test_a_server_answering_garbage(
    pytester: pytest.Pytester, fake_riskrank: StartFake, suite: str, exit_code: int
) -> None:
    fake = fake_riskrank(Answer(status=200, body=b"<html>hello</html>", content_type="text/html"))
    pytester.makepyfile(test_suite=suite)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")
    assert result.ret == exit_code
    assert one_riskrank_line(result) == (
        f"riskrank: unexpected answer from {fake.url} (HTTP 200, not JSON); "
        "2 results may not have been stored"
    )


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize(
    "answer",
    [answer_json(202, ["queued"]), answer_json(202, {"status": 1, "run_id": "x"})],
    ids=["a-list", "wrong-types"],
)
def test_json_that_is_not_the_promised_answer(
    pytester: pytest.Pytester, fake_riskrank: StartFake, answer: Answer
) -> None:
    fake = fake_riskrank(answer)
    pytester.makepyfile(test_suite=PASSING_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")
    assert result.ret == 0
    line = one_riskrank_line(result)
    assert line.startswith(f"riskrank: unexpected answer from {fake.url}")
    assert line.endswith("2 results may not have been stored")


@pytest.mark.usefixtures("configured")
def test_a_connection_closed_without_an_answer_is_tried_twice(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    fake = fake_riskrank(Answer(hang_up=True))
    pytester.makepyfile(test_suite=FAILING_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")
    assert result.ret == 1
    line = one_riskrank_line(result)
    assert line.startswith(f"riskrank: cannot reach {fake.url} (")
    assert line.endswith("); 2 results not uploaded")
    assert len(fake.requests) == 2


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (answer_json(401, {"detail": "invalid token"}), "HTTP 401: invalid token"),
        (
            answer_json(403, {"detail": "the token is not for acme/widgets"}),
            "HTTP 403: the token is not for acme/widgets",
        ),
        (answer_json(404, {"detail": "unknown repository"}), "HTTP 404: unknown repository"),
        (
            answer_json(
                422,
                {"detail": [{"loc": ["body", "commit"], "msg": "Field required"}, {"msg": "x"}]},
            ),
            "HTTP 422: body.commit: Field required (and 1 more)",
        ),
        (
            Answer(status=413, body=b"Request Entity Too Large", content_type="text/plain"),
            "HTTP 413: Request Entity Too Large",
        ),
    ],
    ids=["401", "403", "404", "422", "413"],
)
def test_a_refusal_is_one_line_with_the_detail_and_not_retried(
    pytester: pytest.Pytester, fake_riskrank: StartFake, answer: Answer, said: str
) -> None:
    fake = fake_riskrank(answer)
    pytester.makepyfile(test_suite=PASSING_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")
    assert result.ret == 0
    assert one_riskrank_line(result) == (
        f"riskrank: {fake.url} answered {said}; 2 results not uploaded"
    )
    assert len(fake.requests) == 1


@pytest.mark.usefixtures("configured")
def test_a_server_error_is_tried_once_more(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    def respond(_request: Recorded, number: int) -> Answer:
        if number == 1:
            return answer_json(503, {"detail": "database is starting"})
        return answer_json(202, {"status": "queued", "run_id": 9})

    fake = fake_riskrank(respond)
    pytester.makepyfile(test_suite=FAILING_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")
    assert result.ret == 1
    assert one_riskrank_line(result) == "riskrank: uploaded 2 results (run 9)"
    assert len(fake.requests) == 2
    assert fake.requests[0].body == fake.requests[1].body


@pytest.mark.usefixtures("configured")
def test_a_lasting_server_error(pytester: pytest.Pytester, fake_riskrank: StartFake) -> None:
    fake = fake_riskrank(
        Answer(status=500, body=b"Internal Server Error", content_type="text/plain")
    )
    pytester.makepyfile(test_suite=PASSING_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")
    assert result.ret == 0
    assert one_riskrank_line(result) == (
        f"riskrank: {fake.url} answered HTTP 500: Internal Server Error; 2 results not uploaded"
    )
    assert len(fake.requests) == 2


@pytest.mark.usefixtures("configured")
def test_a_redirect_is_not_followed(pytester: pytest.Pytester, fake_riskrank: StartFake) -> None:
    fake = fake_riskrank(
        Answer(status=301, body=b"", headers={"Location": "https://elsewhere.example/api"})
    )
    pytester.makepyfile(test_suite=PASSING_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}/")
    assert result.ret == 0
    assert one_riskrank_line(result) == (
        f"riskrank: {fake.url} redirects (HTTP 301 to https://elsewhere.example/api); "
        "check the riskrank URL; 2 results not uploaded"
    )


@SUITES
def test_missing_token_repository_and_commit(
    pytester: pytest.Pytester,
    fake_riskrank: StartFake,
    monkeypatch: pytest.MonkeyPatch,
    suite: str,
    exit_code: int,
) -> None:
    fake = fake_riskrank()
    monkeypatch.setenv("RISKRANK_URL", fake.url)
    pytester.makepyfile(test_suite=suite)
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == exit_code
    assert one_riskrank_line(result) == (
        "riskrank: 2 results not uploaded: "
        "no token (set RISKRANK_TOKEN or --riskrank-token); "
        "no repository (set RISKRANK_REPO or --riskrank-repo to OWNER/NAME); "
        "no commit (set RISKRANK_COMMIT or --riskrank-commit, or run in git)"
    )
    assert fake.requests == []


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["--riskrank-repo=widgets"], "the repository 'widgets' is not OWNER/NAME"),
        (["--riskrank-timeout=0"], "the timeout '0.0' is not a positive number"),
    ],
    ids=["repo", "timeout"],
)
def test_malformed_settings(
    pytester: pytest.Pytester, fake_riskrank: StartFake, arguments: list[str], problem: str
) -> None:
    fake = fake_riskrank()
    pytester.makepyfile(test_suite=PASSING_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}", *arguments)
    assert result.ret == 0
    assert one_riskrank_line(result) == f"riskrank: 2 results not uploaded: {problem}"
    assert fake.requests == []


def test_a_malformed_timeout_variable(
    pytester: pytest.Pytester, fake_riskrank: StartFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_riskrank()
    monkeypatch.setenv("RISKRANK_URL", fake.url)
    monkeypatch.setenv("RISKRANK_TOKEN", "rr_test_token")
    monkeypatch.setenv("RISKRANK_REPO", "acme/widgets")
    monkeypatch.setenv("RISKRANK_COMMIT", "b" * 40)
    monkeypatch.setenv("RISKRANK_TIMEOUT", "soon")
    pytester.makepyfile(test_suite=PASSING_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == 0
    assert one_riskrank_line(result) == (
        "riskrank: 2 results not uploaded: the timeout 'soon' is not a number of seconds"
    )


@pytest.mark.usefixtures("configured")
def test_no_git_on_the_path_is_a_missing_commit(
    pytester: pytest.Pytester, fake_riskrank: StartFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_riskrank()
    monkeypatch.delenv("GITHUB_SHA")
    monkeypatch.setenv("PATH", str(pytester.mkdir("empty-bin")))
    pytester.makepyfile(test_suite=PASSING_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")
    assert result.ret == 0
    assert one_riskrank_line(result) == (
        "riskrank: 2 results not uploaded: "
        "no commit (set RISKRANK_COMMIT or --riskrank-commit, or run in git)"
    )


@pytest.mark.usefixtures("configured")
def test_no_test_ran(pytester: pytest.Pytester, fake_riskrank: StartFake) -> None:
    fake = fake_riskrank()
    pytester.makepyfile(test_suite="def helper():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert one_riskrank_line(result) == "riskrank: no test ran, nothing uploaded"
    assert fake.requests == []


@pytest.mark.usefixtures("configured")
def test_collect_only_sends_and_says_nothing(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    fake = fake_riskrank()
    pytester.makepyfile(test_suite=PASSING_SUITE)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", f"--riskrank-url={fake.url}", "--collect-only"
    )
    assert result.ret == 0
    assert "riskrank:" not in result.stdout.str()
    assert fake.requests == []


@pytest.mark.usefixtures("configured")
def test_without_the_terminal_the_line_goes_to_stderr(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    fake = fake_riskrank(answer_json(401, {"detail": "invalid token"}))
    pytester.makepyfile(test_suite=FAILING_SUITE)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "-p", "no:terminal", f"--riskrank-url={fake.url}"
    )
    assert result.ret == 1
    assert one_riskrank_line(result) in result.errlines


@pytest.mark.usefixtures("configured")
def test_a_hook_of_the_suite_that_breaks_the_reports_does_not_break_the_run(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    fake = fake_riskrank()
    pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(tryfirst=True)
        def pytest_runtest_logreport(report):
            report.duration = "not a number"
        """
    )
    pytester.makepyfile(test_suite=PASSING_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")
    assert result.ret == 0
    line = one_riskrank_line(result)
    assert line.startswith("riskrank: internal error (could not read the report of ")
    assert line.endswith("); results not uploaded")
    assert fake.requests == []


@pytest.mark.usefixtures("configured")
def test_an_interrupted_session_uploads_nothing(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    fake = fake_riskrank()
    pytester.makepyfile(
        test_suite="""
        def test_one():
            pass

        def test_stop():
            raise KeyboardInterrupt
        """
    )
    # In a subprocess: in this one, the KeyboardInterrupt would stop the outer run too.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert one_riskrank_line(result) == (
        "riskrank: the session was interrupted; 1 result not uploaded"
    )
    assert fake.requests == []


@pytest.mark.usefixtures("configured")
def test_a_crash_while_loading_the_settings_is_one_line(
    pytester: pytest.Pytester, fake_riskrank: StartFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_riskrank()

    def broken_git(_arguments: object, _cwd: object) -> str:
        raise RuntimeError("git exploded")

    monkeypatch.delenv("GITHUB_SHA")
    monkeypatch.setattr("riskrank_client.ci.run_git", broken_git)
    pytester.makepyfile(test_suite=PASSING_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--riskrank-url={fake.url}")
    assert result.ret == 0
    assert one_riskrank_line(result) == (
        "riskrank: internal error (RuntimeError: git exploded); results not uploaded"
    )
    assert fake.requests == []
