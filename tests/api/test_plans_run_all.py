"""The plan API never answers "run nothing": when riskrank cannot name the
tests to run it says so (`run_all`, status `no_tests`), a plan scored before
any test was known is scored again once tests are, and reasons do not say
the same thing twice. Through the FastAPI app, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from scheduler.db import Database
from scheduler.models import Provider
from scheduler.services import history, repos, tokens
from tests.planning.data import NAMES, SHA, add_commit, report

OTHER_SHA = "cd" * 20


def empty_repository(database: Database) -> tuple[int, str]:
    """acme/new: registered, no test known yet; and a plans:read token."""
    with database.session() as session:
        repository = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/new")
        repository.default_branch = "main"
        token = tokens.create_token(
            session, repository=repository, scopes=(tokens.Scope.PLANS_READ,), name="ci"
        ).token
        return repository.id, token


def ask(
    client: TestClient, token: str, sha: str, repo: str = "acme/new", **body: Any
) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/repos/{repo}/plans/{sha}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_no_known_tests_says_run_the_whole_suite(client: TestClient, database: Database) -> None:
    _, token = empty_repository(database)
    plan = ask(client, token, SHA)
    assert plan["status"] == "no_tests"
    assert plan["run_all"] is True
    assert (plan["total"], plan["selected"], plan["tests"]) == (0, 0, [])
    assert plan["message"] == (
        "riskrank knows no test of this repository yet and no test list was sent: "
        "run the whole suite"
    )
    assert isinstance(plan["plan_id"], int)  # stored, to be evaluated like any plan
    # The same over GET, with a budget: still the whole suite.
    response = client.get(
        f"/api/v1/repos/acme/new/plans/{SHA}",
        params={"mode": "fraction", "budget": "0.1"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert (response.json()["status"], response.json()["run_all"]) == ("no_tests", True)


def test_a_collected_list_is_the_suite_even_with_no_history(
    client: TestClient, database: Database
) -> None:
    _, token = empty_repository(database)
    collected = ["tests/test_a.py::test_one", "tests/test_a.py::test_two"]
    plan = ask(client, token, SHA, tests=collected, mode="fraction", budget=0.5)
    assert (plan["status"], plan["run_all"], plan["total"]) == ("heuristic", False, 2)
    assert plan["message"] is None
    # Both are new to riskrank: both run, whatever the budget.
    assert sorted(test["test"] for test in plan["tests"] if test["selected"]) == collected
    assert {test["rule"] for test in plan["tests"]} == {"new"}
    # An empty collection: nothing to name, so the whole (empty) suite.
    empty = ask(client, token, OTHER_SHA, tests=[])
    assert (empty["total"], empty["run_all"]) == (0, True)


def test_a_plan_scored_before_any_test_was_known_is_scored_again(
    client: TestClient, database: Database
) -> None:
    repository_id, token = empty_repository(database)
    add_commit(database, repository_id, SHA)
    first = ask(client, token, SHA)
    assert (first["status"], first["total"], first["run_all"]) == ("no_tests", 0, True)
    # Outcomes of another build arrive: riskrank now knows the tests.
    history.import_history(database, repository_id=repository_id, reports=[report(1, set())])
    second = ask(client, token, SHA)
    assert second["plan_id"] != first["plan_id"]
    assert (second["status"], second["run_all"], second["message"]) == ("heuristic", False, None)
    assert sorted(test["test"] for test in second["tests"]) == sorted(NAMES)
    # Asked again, the new plan is served as it is.
    assert ask(client, token, SHA)["plan_id"] == second["plan_id"]


def test_a_full_run_without_a_collected_list_runs_the_whole_suite(
    client: TestClient, database: Database, repository_id: int, token: str
) -> None:
    add_commit(database, repository_id, SHA, "poetry.lock")
    plan = ask(client, token, SHA, repo="acme/app", mode="fraction", budget=0.25)
    assert plan["full_run"] is True
    assert plan["run_all"] is True  # a test new in this commit is not in the list
    assert plan["selected"] == plan["total"] == len(NAMES)
    collected = [*NAMES, "tests/test_new.py::test_added"]
    listed = ask(client, token, SHA, repo="acme/app", mode="fraction", budget=0.25, tests=collected)
    assert (listed["full_run"], listed["run_all"], listed["selected"]) == (True, False, 9)


def test_a_ready_plan_lists_its_tests(client: TestClient, token: str) -> None:
    plan = ask(client, token, SHA, repo="acme/app")
    assert (plan["status"], plan["run_all"], plan["total"]) == ("heuristic", False, len(NAMES))


def test_reasons_do_not_repeat_their_rule(
    client: TestClient, database: Database, repository_id: int, token: str
) -> None:
    # The commit changes the tests' own files: the heuristic's reason for
    # them says so, and so does the rule's sentence.
    add_commit(database, repository_id, SHA, "tests/test_ui.py", "tests/test_net.py")
    plan = ask(client, token, SHA, repo="acme/app", mode="fraction", budget=0)
    reasons = {
        test["test"]: test["reason"] for test in plan["tests"] if test["rule"] == "own_file_changed"
    }
    assert reasons == {
        "tests/test_net.py::test_get": "Its own file changed. Last failed 3 builds ago",
        "tests/test_net.py::test_post": "Its own file changed",
        "tests/test_ui.py::test_click": "Its own file changed",
        "tests/test_ui.py::test_scroll": "Its own file changed",
    }


def test_a_collected_file_or_class_stands_for_its_known_tests(
    client: TestClient, token: str
) -> None:
    # What a runner that cannot list its test cases collects: files (Jest's
    # --listTests) or classes (Maven's test sources).
    collected = ["tests/test_io.py", "tests/test_net.py::test_get", "tests/test_new.py"]
    plan = ask(client, token, SHA, repo="acme/app", mode="fraction", budget=0, tests=collected)
    assert plan["run_all"] is False
    assert sorted(test["test"] for test in plan["tests"]) == [
        "tests/test_io.py::test_read",
        "tests/test_io.py::test_write",
        "tests/test_net.py::test_get",
        "tests/test_new.py",
    ]
    # The group no known test belongs to is new: it runs whatever the budget.
    [new] = [test for test in plan["tests"] if test["test"] == "tests/test_new.py"]
    assert (new["selected"], new["rule"]) == (True, "new")
