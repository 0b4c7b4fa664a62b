"""Following riskrank's plan (--riskrank-mode): the plan is asked for with the
collected tests, the items run in its order, the dropped ones are deselected,
and the outcomes go back with the plan's id. Whatever goes wrong with the
plan, every test runs in its original order and the exit code is the one
the tests make."""

from __future__ import annotations

import importlib.util
import time

import pytest
from riskrank_testing import (
    FOUR_TESTS,
    RECEIPT,
    Answer,
    Recorded,
    StartFake,
    answer_json,
    free_port,
    plan_answer,
    plan_requests,
    ran_in_order,
    riskrank_lines,
    routed,
    upload_requests,
)

SHA = "a" * 40
IDS = [f"test_suite.py::test_{letter}" for letter in "abcd"]
A, B, C, D = IDS
FRACTION = ["--riskrank-mode=fraction", "--riskrank-budget=0.5"]


@pytest.fixture(autouse=True)
def configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything but the URL, from the environment as on a CI machine."""
    monkeypatch.setenv("RISKRANK_TOKEN", "rr_test_token")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/widgets")
    monkeypatch.setenv("GITHUB_SHA", SHA)
    monkeypatch.setenv("GITHUB_REF_NAME", "main")


def _run(pytester: pytest.Pytester, url: str, *arguments: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "-v", f"--riskrank-url={url}", *arguments)


def _without_plugin(pytester: pytest.Pytester) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "-v", "-p", "no:riskrank")


# --- following a plan -----------------------------------------------------------


def test_the_plan_orders_trims_and_is_reported(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    fake = fake_riskrank(
        routed(answer_json(200, plan_answer([(D, True), (B, True), (A, False), (C, False)])))
    )
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run(pytester, fake.url, *FRACTION)

    assert result.ret == 1  # test_d fails, and it ran
    assert ran_in_order(result) == [D, B]
    result.stdout.fnmatch_lines(["*collected 4 items / 2 deselected / 2 selected"])
    assert "SKIPPED" not in result.stdout.str()
    assert riskrank_lines(result) == [
        "riskrank: plan 17 (ready, model v3): running 2 of 4 tests; about 2m 05s saved; "
        "miss risk 0.21 expected failures",
        "riskrank: uploaded 2 results (run 45)",
    ]

    [asked] = plan_requests(fake)
    assert asked.method == "POST"
    assert asked.path == f"/api/v1/repos/acme/widgets/plans/{SHA}"
    assert asked.headers["Authorization"] == "Bearer rr_test_token"
    assert asked.json() == {
        "mode": "fraction",
        "budget": 0.5,
        "branch": "main",
        "tests": IDS,
    }
    [upload] = upload_requests(fake)
    sent = upload.json()
    assert sent["plan_id"] == 17
    assert [(r["test"], r["outcome"]) for r in sent["results"]] == [
        (D, "failed"),
        (B, "passed"),
    ]


def test_tests_the_plan_does_not_mention_run_last(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    fake = fake_riskrank(routed(answer_json(200, plan_answer([(C, True), (A, False)], total=4))))
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run(pytester, fake.url, *FRACTION)
    assert result.ret == 1
    assert ran_in_order(result) == [C, B, D]
    [line, _upload] = riskrank_lines(result)
    assert line.endswith("; 2 tests not in the plan run last")


def test_a_shard_runs_only_its_listed_tests(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    # With a shard the answer lists this shard's selected tests only.
    answer = plan_answer([(C, True), (A, True)], total=4, shard="2/3")
    fake = fake_riskrank(routed(answer_json(200, answer)))
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run(pytester, fake.url, *FRACTION, "--riskrank-shard=2/3", "--riskrank-by=duration")
    assert result.ret == 0
    assert ran_in_order(result) == [C, A]
    result.stdout.fnmatch_lines(["*collected 4 items / 2 deselected / 2 selected"])
    assert riskrank_lines(result)[0] == (
        "riskrank: plan 17 (ready, model v3): running 2 of 4 tests (shard 2/3); "
        "about 2m 05s saved; miss risk 0.21 expected failures"
    )
    assert plan_requests(fake)[0].json() == {
        "mode": "fraction",
        "budget": 0.5,
        "by": "duration",
        "shard": "2/3",
        "branch": "main",
        "tests": IDS,
    }


def test_a_sharded_plan_for_other_tests_is_not_followed(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    answer = plan_answer([(C, True)], total=9, shard="1/2")
    fake = fake_riskrank(routed(answer_json(200, answer)))
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run(pytester, fake.url, *FRACTION, "--riskrank-shard=1/2")
    assert result.ret == 1
    assert ran_in_order(result) == IDS
    assert riskrank_lines(result)[0] == (
        "riskrank: no plan: the plan covers 9 tests, 4 were sent; running every test"
    )
    assert upload_requests(fake)[0].json()["plan_id"] is None


@pytest.mark.parametrize("shard", ["1/2", None], ids=["sharded", "whole"])
def test_a_plan_that_drops_every_test_exits_0(
    pytester: pytest.Pytester, fake_riskrank: StartFake, shard: str | None
) -> None:
    answer = plan_answer([] if shard else [(test, False) for test in IDS], total=4)
    fake = fake_riskrank(routed(answer_json(200, answer)))
    pytester.makepyfile(test_suite=FOUR_TESTS)
    arguments = [*FRACTION, *([f"--riskrank-shard={shard}"] if shard else [])]
    result = _run(pytester, fake.url, *arguments)
    assert result.ret == pytest.ExitCode.OK
    assert ran_in_order(result) == []
    result.stdout.fnmatch_lines(["*collected 4 items / 4 deselected / 0 selected"])
    assert riskrank_lines(result)[-1] == "riskrank: no test ran, nothing uploaded"
    assert upload_requests(fake) == []


def test_nothing_left_by_the_suite_itself_still_exits_5(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    fake = fake_riskrank(routed(answer_json(200, plan_answer([]))))
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run(pytester, fake.url, *FRACTION, "-k", "nothing_matches")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert plan_requests(fake) == []


def test_only_the_tests_left_by_k_are_planned(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    fake = fake_riskrank(routed(answer_json(200, plan_answer([(C, True), (B, True)]))))
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run(pytester, fake.url, *FRACTION, "-k", "b or c")
    assert result.ret == 0
    assert ran_in_order(result) == [C, B]
    assert plan_requests(fake)[0].json()["tests"] == [B, C]


def test_a_fallback_plan_with_every_test_is_followed_and_said(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    answer = plan_answer(
        [(B, True), (A, True), (D, True), (C, True)],
        status="fallback",
        model_version=None,
        message="scoring failed: no history",
        duration_dropped=0.0,
        expected_failures_dropped=0.0,
    )
    fake = fake_riskrank(routed(answer_json(200, answer)))
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run(pytester, fake.url, *FRACTION)
    assert result.ret == 1
    assert ran_in_order(result) == [B, A, D, C]
    assert riskrank_lines(result)[0] == (
        "riskrank: plan 17 (fallback: scoring failed: no history): "
        "running all 4 tests in riskrank's order"
    )
    assert upload_requests(fake)[0].json()["plan_id"] == 17


def test_a_full_run_says_why(pytester: pytest.Pytester, fake_riskrank: StartFake) -> None:
    answer = plan_answer(
        [(test, True) for test in IDS],
        full_run=True,
        full_run_reason="the change touches poetry.lock",
    )
    fake = fake_riskrank(routed(answer_json(200, answer)))
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run(pytester, fake.url, *FRACTION)
    assert riskrank_lines(result)[0] == (
        "riskrank: plan 17 (ready, model v3): running all 4 tests in riskrank's order; "
        "full run: the change touches poetry.lock"
    )


NO_TESTS_MESSAGE = (
    "riskrank knows no test of this repository yet and no test list was sent: run the whole suite"
)


def test_a_plan_that_asks_for_the_whole_suite_runs_every_test(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    # run_all: the listed tests in their order, then the others; none deselected.
    answer = plan_answer([(D, True), (A, False)], run_all=True)
    fake = fake_riskrank(routed(answer_json(200, answer)))
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run(pytester, fake.url, *FRACTION, "--riskrank-shard=2/2")
    assert result.ret == 1
    assert ran_in_order(result) == [D, A, B, C]
    assert "deselected" not in result.stdout.str()
    assert riskrank_lines(result)[0] == (
        "riskrank: plan 17 (ready, model v3): running all 4 tests in riskrank's order; "
        "the whole suite: riskrank cannot name the tests to run"
    )


def test_a_plan_of_no_test_from_an_older_server_runs_every_test(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    # No run_all in the answer, and total 0: that cannot mean "run nothing".
    fake = fake_riskrank(routed(answer_json(200, plan_answer([], shard="1/2"))))
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run(pytester, fake.url, *FRACTION, "--riskrank-shard=1/2")
    assert result.ret == 1
    assert ran_in_order(result) == IDS
    assert riskrank_lines(result)[0] == (
        "riskrank: plan 17 (ready, model v3): running all 4 tests as collected; "
        "the whole suite: riskrank knows no test of this repository yet"
    )


def test_the_settings_come_from_the_environment_too(
    pytester: pytest.Pytester, fake_riskrank: StartFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_riskrank(routed(answer_json(200, plan_answer([(A, True), (B, False)], total=4))))
    monkeypatch.setenv("RISKRANK_URL", fake.url)
    monkeypatch.setenv("RISKRANK_MODE", "time")
    monkeypatch.setenv("RISKRANK_BUDGET", "60")
    monkeypatch.setenv("RISKRANK_SHARD", "1/1")
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    assert result.ret == 0
    assert ran_in_order(result) == [A]
    assert plan_requests(fake)[0].json() == {
        "mode": "time",
        "budget": 60.0,
        "shard": "1/1",
        "branch": "main",
        "tests": IDS,
    }


def test_without_a_mode_no_plan_is_asked_for(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    fake = fake_riskrank(routed(answer_json(200, plan_answer([]))))
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run(pytester, fake.url)
    assert result.ret == 1
    assert ran_in_order(result) == IDS
    assert riskrank_lines(result) == ["riskrank: uploaded 4 results (run 45)"]
    assert plan_requests(fake) == []
    assert upload_requests(fake)[0].json()["plan_id"] is None


# --- fail open --------------------------------------------------------------------

SUITES = pytest.mark.parametrize(
    ("suite", "exit_code"),
    [(FOUR_TESTS.replace('"d" == "D"', "True"), 0), (FOUR_TESTS, 1)],
    ids=["passing", "failing"],
)


def _runs_as_without_the_plugin(
    pytester: pytest.Pytester, result: pytest.RunResult, exit_code: int
) -> None:
    without = _without_plugin(pytester)
    assert result.ret == without.ret == exit_code
    assert ran_in_order(result) == ran_in_order(without) == IDS
    assert "deselected" not in result.stdout.str()


@SUITES
def test_nothing_listening(pytester: pytest.Pytester, suite: str, exit_code: int) -> None:
    pytester.makepyfile(test_suite=suite)
    url = f"http://127.0.0.1:{free_port()}"
    result = _run(pytester, url, *FRACTION)
    _runs_as_without_the_plugin(pytester, result, exit_code)
    assert riskrank_lines(result) == [
        f"riskrank: no plan: cannot reach {url} (Connection refused); running every test",
        f"riskrank: cannot reach {url} (Connection refused); 4 results not uploaded",
    ]


@SUITES
def test_a_plan_slower_than_the_timeout(
    pytester: pytest.Pytester, fake_riskrank: StartFake, suite: str, exit_code: int
) -> None:
    fake = fake_riskrank(routed(Answer(status=200, body=b"{}", delay=30)))
    pytester.makepyfile(test_suite=suite)
    started = time.monotonic()
    result = _run(pytester, fake.url, *FRACTION, "--riskrank-timeout=1")
    elapsed = time.monotonic() - started
    _runs_as_without_the_plugin(pytester, result, exit_code)
    assert riskrank_lines(result) == [
        f"riskrank: no plan: no answer from {fake.url} within 1s; running every test",
        "riskrank: uploaded 4 results (run 45)",
    ]
    assert elapsed < 1 + 5
    assert len(plan_requests(fake)) == 1
    assert upload_requests(fake)[0].json()["plan_id"] is None


BAD_PLANS = [
    (
        Answer(status=500, body=b"Internal Server Error", content_type="text/plain"),
        "{url} answered HTTP 500: Internal Server Error",
    ),
    (
        Answer(status=200, body=b'{"plan_id": 17, "tests": [', content_type="application/json"),
        "unexpected answer from {url} (HTTP 200, not JSON)",
    ),
    (answer_json(200, [A, B]), "unexpected plan from {url} (not a JSON object)"),
    (
        answer_json(200, {"plan_id": 17, "status": "ready"}),
        "unexpected plan from {url} ('tests' is not a list)",
    ),
    (
        answer_json(200, plan_answer([(A, True)]) | {"tests": [{"test": A, "selected": "yes"}]}),
        "unexpected plan from {url} (an entry of 'tests' lacks a string 'test' "
        "or a boolean 'selected')",
    ),
    (
        answer_json(200, plan_answer([(A, True)], plan_id="17")),
        "unexpected plan from {url} ('plan_id' is not an integer)",
    ),
    (
        answer_json(404, {"detail": "unknown repository"}),
        "{url} answered HTTP 404: unknown repository",
    ),
]


@SUITES
@pytest.mark.parametrize(
    ("answer", "said"),
    BAD_PLANS,
    ids=["500", "invalid-json", "a-list", "no-tests", "wrong-entry", "wrong-id", "404"],
)
def test_a_broken_plan_runs_everything(
    pytester: pytest.Pytester,
    fake_riskrank: StartFake,
    suite: str,
    exit_code: int,
    answer: Answer,
    said: str,
) -> None:
    fake = fake_riskrank(routed(answer))
    pytester.makepyfile(test_suite=suite)
    result = _run(pytester, fake.url, *FRACTION)
    _runs_as_without_the_plugin(pytester, result, exit_code)
    assert riskrank_lines(result) == [
        f"riskrank: no plan: {said.format(url=fake.url)}; running every test",
        "riskrank: uploaded 4 results (run 45)",
    ]
    assert upload_requests(fake)[0].json()["plan_id"] is None


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (
            ["--riskrank-mode=fast"],
            "the mode 'fast' is not one of order, time, fraction, confidence",
        ),
        (
            ["--riskrank-mode=fraction"],
            "the mode 'fraction' needs a budget (--riskrank-budget or RISKRANK_BUDGET)",
        ),
        (
            ["--riskrank-mode=fraction", "--riskrank-budget=30"],
            "the fraction budget 30 is not a share between 0 and 1",
        ),
        (
            ["--riskrank-mode=time", "--riskrank-budget=soon"],
            "the budget 'soon' is not a number",
        ),
        (
            ["--riskrank-mode=order", "--riskrank-shard=5/4"],
            "the shard '5/4' is not I/N with 1 <= I <= N",
        ),
        (
            ["--riskrank-mode=fraction", "--riskrank-budget=0.3", "--riskrank-by=lines"],
            "--riskrank-by 'lines' is not one of tests, duration",
        ),
        (["--riskrank-shard=1/4"], "--riskrank-shard needs --riskrank-mode (or RISKRANK_MODE)"),
    ],
    ids=["mode", "no-budget", "share", "budget", "shard", "by", "no-mode"],
)
def test_malformed_plan_options_run_everything(
    pytester: pytest.Pytester, fake_riskrank: StartFake, arguments: list[str], problem: str
) -> None:
    fake = fake_riskrank(routed(answer_json(200, plan_answer([]))))
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run(pytester, fake.url, *arguments)
    _runs_as_without_the_plugin(pytester, result, 1)
    assert riskrank_lines(result) == [
        f"riskrank: no plan ({problem}); running every test",
        "riskrank: uploaded 4 results (run 45)",
    ]
    assert plan_requests(fake) == []


def test_missing_settings_ask_for_no_plan(
    pytester: pytest.Pytester, fake_riskrank: StartFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_riskrank(routed(answer_json(200, plan_answer([]))))
    monkeypatch.delenv("RISKRANK_TOKEN")
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run(pytester, fake.url, *FRACTION)
    _runs_as_without_the_plugin(pytester, result, 1)
    assert riskrank_lines(result)[0] == (
        "riskrank: no plan (no token (set RISKRANK_TOKEN or --riskrank-token)); running every test"
    )
    assert fake.requests == []


needs_xdist = pytest.mark.skipif(
    importlib.util.find_spec("xdist") is None, reason="needs pytest-xdist"
)


def _run_xdist(pytester: pytest.Pytester, url: str, *arguments: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-v", "-n", "2", f"--riskrank-url={url}", *arguments
    )


@needs_xdist
def test_under_xdist_the_controller_asks_once_and_every_worker_follows(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    fake = fake_riskrank(
        routed(answer_json(200, plan_answer([(D, True), (B, True), (A, False), (C, False)])))
    )
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run_xdist(pytester, fake.url, *FRACTION)
    assert result.ret == 1  # test_d fails, and it ran
    result.stdout.fnmatch_lines(["*1 failed, 1 passed*"])
    assert sorted(_ran_under_xdist(result)) == [B, D]
    assert riskrank_lines(result) == [
        "riskrank: plan 17 (ready, model v3): running 2 tests on 2 xdist workers, riskiest "
        "first; about 2m 05s saved; miss risk 0.21 expected failures",
        "riskrank: uploaded 2 results (run 45)",
    ]
    # Asked once, by the controller, which collects nothing: no test list.
    [asked] = plan_requests(fake)
    assert asked.json() == {"mode": "fraction", "budget": 0.5, "branch": "main"}
    assert upload_requests(fake)[0].json()["plan_id"] == 17


@needs_xdist
def test_under_xdist_tests_the_plan_does_not_know_run(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    # The plan knows two of the four tests (the others are new to riskrank).
    fake = fake_riskrank(routed(answer_json(200, plan_answer([(B, True), (A, False)]))))
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run_xdist(pytester, fake.url, *FRACTION)
    assert result.ret == 1
    assert sorted(_ran_under_xdist(result)) == [B, C, D]


@needs_xdist
@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (
            Answer(status=500, body=b"Internal Server Error", content_type="text/plain"),
            "{url} answered HTTP 500: Internal Server Error",
        ),
        (answer_json(200, ["not", "a", "plan"]), "unexpected plan from {url} (not a JSON object)"),
    ],
    ids=["500", "garbage"],
)
def test_under_xdist_without_a_plan_every_test_runs(
    pytester: pytest.Pytester, fake_riskrank: StartFake, answer: Answer, said: str
) -> None:
    fake = fake_riskrank(routed(answer))
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run_xdist(pytester, fake.url, *FRACTION)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*1 failed, 3 passed*"])
    assert riskrank_lines(result) == [
        f"riskrank: no plan: {said.format(url=fake.url)}; running every test",
        "riskrank: uploaded 4 results (run 45)",
    ]
    assert upload_requests(fake)[0].json()["plan_id"] is None


@needs_xdist
def test_under_xdist_a_dead_riskrank_runs_everything(pytester: pytest.Pytester) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run_xdist(pytester, url, *FRACTION)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*1 failed, 3 passed*"])
    assert riskrank_lines(result)[0] == (
        f"riskrank: no plan: cannot reach {url} (Connection refused); running every test"
    )


@needs_xdist
def test_under_xdist_a_shard_runs_its_tests_and_shard_1_the_new_ones(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    whole = answer_json(200, plan_answer([(D, True), (B, True), (A, False)]))
    shards = {
        "1/2": answer_json(200, plan_answer([(D, True)], shard="1/2")),
        "2/2": answer_json(200, plan_answer([(B, True)], shard="2/2")),
    }

    def respond(request: Recorded, _number: int) -> Answer:
        if "/plans/" not in request.path:
            return RECEIPT
        shard = request.json().get("shard")
        return shards[shard] if shard else whole

    fake = fake_riskrank(respond)
    pytester.makepyfile(test_suite=FOUR_TESTS)  # test_c is new to riskrank
    first = _run_xdist(pytester, fake.url, *FRACTION, "--riskrank-shard=1/2")
    second = _run_xdist(pytester, fake.url, *FRACTION, "--riskrank-shard=2/2")
    assert sorted(_ran_under_xdist(first)) == [C, D]
    assert sorted(_ran_under_xdist(second)) == [B]
    assert [request.json().get("shard") for request in plan_requests(fake)] == [
        "1/2",
        None,
        "2/2",
        None,
    ]


@needs_xdist
def test_under_xdist_a_plan_that_drops_everything_exits_0(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    fake = fake_riskrank(routed(answer_json(200, plan_answer([(test, False) for test in IDS]))))
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run_xdist(pytester, fake.url, *FRACTION)
    assert result.ret == 0
    assert _ran_under_xdist(result) == []
    assert riskrank_lines(result)[0].startswith(
        "riskrank: plan 17 (ready, model v3): running 0 tests on 2 xdist workers"
    )


@needs_xdist
def test_under_xdist_a_plan_of_no_known_test_runs_everything_on_every_shard(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    answer = plan_answer(
        [], plan_id=5, status="no_tests", model_version=None, run_all=True,
        message=NO_TESTS_MESSAGE, shard="2/2",
    )  # fmt: skip
    fake = fake_riskrank(routed(answer_json(200, answer)))
    pytester.makepyfile(test_suite=FOUR_TESTS)
    result = _run_xdist(pytester, fake.url, *FRACTION, "--riskrank-shard=2/2")
    assert result.ret == 1
    assert sorted(_ran_under_xdist(result)) == IDS
    assert riskrank_lines(result)[0] == (
        "riskrank: plan 5 (no_tests): running 4 tests on 2 xdist workers; "
        "the whole suite: riskrank knows no test of this repository yet"
    )
    # One question: no second one for the whole (unsharded) plan.
    assert len(plan_requests(fake)) == 1


def _ran_under_xdist(result: pytest.RunResult) -> list[str]:
    """The node ids `pytest -v -n N` reports as run (`[gw0] [ 50%] PASSED id`)."""
    ran = []
    for line in result.outlines:
        parts = line.split()
        if parts and parts[0].startswith("[gw"):
            ran.extend(part for part in parts if "::" in part)
    return ran


def test_the_plan_options_are_in_the_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "*--riskrank-mode=MODE*",
            "*--riskrank-budget=BUDGET*",
            "*--riskrank-by=tests|duration*",
            "*--riskrank-shard=I/N*",
        ]
    )


# --- expanding --------------------------------------------------------------------

SIX_TESTS = """
def test_a():
    assert False

def test_b():
    assert False

def test_c():
    pass

def test_d():
    pass

def test_e():
    pass

def test_f():
    pass
"""


def _six(expand_after: int | None, rules: dict[str, str] | None = None) -> dict[str, object]:
    ids = [f"test_suite.py::test_{letter}" for letter in "abcdef"]
    answer = plan_answer([(i, n < 3) for n, i in enumerate(ids)], expand_after=expand_after)
    for entry in answer["tests"]:
        entry["rule"] = (rules or {}).get(entry["test"], entry["rule"])
    return answer


def test_the_dropped_tests_run_when_enough_tests_that_had_passed_fail(
    pytester: pytest.Pytester, fake_riskrank: StartFake
) -> None:
    fake = fake_riskrank(routed(answer_json(200, _six(2))))
    pytester.makepyfile(test_suite=SIX_TESTS)
    result = _run(pytester, fake.url, *FRACTION)
    assert result.ret == 1
    ids = [f"test_suite.py::test_{letter}" for letter in "abcdef"]
    assert ran_in_order(result) == ids
    assert riskrank_lines(result) == [
        "riskrank: plan 17 (ready, model v3): running 3 of 6 tests; about 2m 05s saved; "
        "miss risk 0.21 expected failures; the dropped tests run too if 2 selected tests that "
        "had passed fail",
        "riskrank: 2 tests that had passed failed, more than riskrank foresaw: running the "
        "3 tests the plan dropped",
        "riskrank: uploaded 6 results (run 45)",
    ]
    [upload] = upload_requests(fake)
    assert [r["test"] for r in upload.json()["results"]] == ids


@pytest.mark.parametrize(
    ("expand_after", "rules", "arguments"),
    [
        (3, None, ()),  # two failures, three needed
        (None, None, ()),  # a server that does not expand
        (2, {"test_suite.py::test_b": "recently_failed"}, ()),  # failing again is no news
        (2, {"test_suite.py::test_b": "exploration"}, ()),  # the draw never decides
        (2, None, ("-x",)),  # the user asked to stop at the first failure
    ],
    ids=["too-few", "no-threshold", "recently-failed", "exploration", "stop-first"],
)
def test_otherwise_the_dropped_tests_stay_dropped(
    pytester: pytest.Pytester,
    fake_riskrank: StartFake,
    expand_after: int | None,
    rules: dict[str, str] | None,
    arguments: tuple[str, ...],
) -> None:
    fake = fake_riskrank(routed(answer_json(200, _six(expand_after, rules))))
    pytester.makepyfile(test_suite=SIX_TESTS)
    result = _run(pytester, fake.url, *FRACTION, *arguments)
    assert result.ret == 1
    ran = ran_in_order(result)
    assert ran == (["test_suite.py::test_a"] if arguments else [
        f"test_suite.py::test_{letter}" for letter in "abc"
    ])  # fmt: skip
    assert not any("tests the plan dropped" in line for line in riskrank_lines(result))
