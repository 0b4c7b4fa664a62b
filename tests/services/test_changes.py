"""Changed files asked of the provider's API, on both databases: a pull
request's or merge request's files (the real samples), and a comparison for
a push whose payload does not list them all (GitLab's cut list, a forced
GitHub push). The provider is a local server answering like GitHub's and
GitLab's APIs; the worker's steps run here, in the test's process."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from scheduler.db import Database
from scheduler.models import ChangedFile, CiEvent, Commit, EventStatus, FileStatus, Provider
from scheduler.providers_api.http import HttpSettings
from scheduler.services import changes, events, repos, tokens
from tests.e2e.conftest import clean_env
from tests.fake_provider import TOKEN, Answer, FakeProvider, json_answer, register
from tests.helpers import github_headers, gitlab_headers, sample
from tests.test_cli_outcomes import one_line, riskrank, run_together

FAST = HttpSettings(read_timeout=2, max_attempts=2, backoff_seconds=0.01, total_seconds=10)
PR_HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
MR_HEAD = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
# push-forced.json's before and after.
FORCED = ("d89fce43657c5fc2de8f677a052c9dcca941872a", "1f65bfd479dddb9453466feeaf4ac9249a2ac9df")


def handle(database: Database, event_id: int) -> tuple[EventStatus | None, str | None]:
    """The worker's steps: what to ask, asking it, storing (with the
    reason when the provider did not answer)."""
    with database.session() as session:
        job = changes.change_job(session, event_id)
    fetched, note = None, None
    if job is not None:
        assert TOKEN not in repr(job)
        try:
            fetched = changes.fetch(job, http=FAST)
        except changes.FetchFailed as error:
            note = error.message
    with database.session() as session:
        status = events.process_event(session, event_id, fetched=fetched, note=note, reason=note)
    with database.session() as session:
        event = session.get_one(CiEvent, event_id)
        return status, event.error


def files_of(database: Database, sha: str) -> list[tuple[str, str, str | None, int | None]]:
    with database.session() as session:
        rows = session.execute(
            select(
                ChangedFile.path, ChangedFile.status, ChangedFile.old_path, ChangedFile.additions
            )
            .join(Commit, Commit.id == ChangedFile.commit_id)
            .where(Commit.sha == sha)
            .order_by(ChangedFile.path)
        ).all()
    return [(path, FileStatus(status).value, old, added) for path, status, old, added in rows]


def gh_file(name: str, status: str = "modified", **extra: Any) -> dict[str, Any]:
    return {"filename": name, "status": status, "additions": 2, "deletions": 1, **extra}


def script_pull_request_files(server: FakeProvider) -> str:
    path = "/repos/Codertocat/Hello-World/pulls/2/files"
    page2 = f"{path}?per_page=100&page=2"
    server.on(
        f"{path}?per_page=100",
        json_answer(
            [gh_file("src/app.py"), gh_file("tests/test_app.py", "added")],
            Link=f'<{{base}}{page2}>; rel="next", <{{base}}{page2}>; rel="last"',
        ),
    )
    server.on(
        page2,
        json_answer(
            [gh_file("lib/new.py", "renamed", previous_filename="lib/old.py"), {"filename": ""}]
        ),
    )
    return path


def test_a_pull_request_is_scored_with_its_files_from_the_api(
    client: TestClient, database: Database, server: FakeProvider, github_samples: Path
) -> None:
    register(database, Provider.GITHUB, "Codertocat/Hello-World", server.url)
    path = script_pull_request_files(server)
    body = sample(github_samples, "pull_request-opened.json")
    response = client.post(
        "/webhooks/github", content=body, headers=github_headers(body, event="pull_request")
    )
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]

    assert handle(database, event_id) == (EventStatus.HANDLED, None)
    expected = [
        ("lib/new.py", "renamed", "lib/old.py", 2),
        ("src/app.py", "modified", None, 2),
        ("tests/test_app.py", "added", None, 2),
    ]
    assert files_of(database, PR_HEAD) == expected
    assert [seen.headers["Authorization"] for seen in server.requests_to(path)] == [
        f"Bearer {TOKEN}"
    ] * 2
    # Handled once: a second run asks nothing and changes nothing.
    assert handle(database, event_id) == (EventStatus.HANDLED, None)
    assert len(server.requests_to(path)) == 2
    assert files_of(database, PR_HEAD) == expected
    with database.session() as session:
        head = events.pushed_head(session, event_id)
        commit = session.get_one(Commit, head)
        assert (commit.sha, commit.branch, commit.parent_sha) == (PR_HEAD, "changes", None)


def test_a_reopened_pull_request_is_scored_with_its_files_from_the_api(
    client: TestClient, database: Database, server: FakeProvider, github_samples: Path
) -> None:
    register(database, Provider.GITHUB, "Codertocat/Hello-World", server.url)
    path = script_pull_request_files(server)
    opened = sample(github_samples, "pull_request-opened.json")
    body = opened.replace(b'"action": "opened"', b'"action": "reopened"')
    assert body != opened
    response = client.post(
        "/webhooks/github", content=body, headers=github_headers(body, event="pull_request")
    )
    assert response.json()["status"] == "queued", response.text
    assert handle(database, response.json()["event_id"]) == (EventStatus.HANDLED, None)
    assert [path for path, *_ in files_of(database, PR_HEAD)] == [
        "lib/new.py",
        "src/app.py",
        "tests/test_app.py",
    ]
    assert len(server.requests_to(path)) == 2  # both pages


def test_the_synchronize_sample_is_queued_and_closed_pull_requests_are_dropped(
    client: TestClient, database: Database, github_samples: Path
) -> None:
    register(database, Provider.GITHUB, "Codertocat/Hello-World", None)
    body = sample(github_samples, "pull_request-synchronize.json")
    headers = github_headers(body, event="pull_request")
    assert client.post("/webhooks/github", content=body, headers=headers).json()["status"] == (
        "queued"
    )
    closed = body.replace(b'"action": "synchronize"', b'"action": "closed"')
    assert closed != body
    response = client.post(
        "/webhooks/github", content=closed, headers=github_headers(closed, event="pull_request")
    )
    assert response.json() == {"status": "ignored", "event_id": None}
    broken = body.replace(f'"sha": "{PR_HEAD}"'.encode(), b'"sha": 7')
    assert broken != body
    response = client.post(
        "/webhooks/github", content=broken, headers=github_headers(broken, event="pull_request")
    )
    assert response.status_code == 400
    assert response.json()["detail"] == "pull_request.head.sha is required"


def test_without_a_token_the_pull_request_is_handled_with_what_is_known(
    client: TestClient, database: Database, github_samples: Path
) -> None:
    register(database, Provider.GITHUB, "Codertocat/Hello-World", None)
    body = sample(github_samples, "pull_request-opened.json")
    response = client.post(
        "/webhooks/github", content=body, headers=github_headers(body, event="pull_request")
    )
    event_id = response.json()["event_id"]
    assert handle(database, event_id) == (EventStatus.HANDLED, None)
    assert files_of(database, PR_HEAD) == []
    with database.session() as session:
        assert events.pushed_head(session, event_id) is not None


def test_a_provider_that_refuses_leaves_the_pull_request_handled_with_the_reason(
    client: TestClient, database: Database, server: FakeProvider, github_samples: Path
) -> None:
    register(database, Provider.GITHUB, "Codertocat/Hello-World", server.url)
    server.on(
        "/repos/Codertocat/Hello-World/pulls/2/files",
        json_answer({"message": "Bad credentials"}, 401),
    )
    body = sample(github_samples, "pull_request-opened.json")
    response = client.post(
        "/webhooks/github", content=body, headers=github_headers(body, event="pull_request")
    )
    status, error = handle(database, response.json()["event_id"])
    assert status is EventStatus.HANDLED
    assert error == (
        f"GET {server.url.removeprefix('http://')}/repos/Codertocat/Hello-World/pulls/2/files: "
        "HTTP 401"
    )
    with database.session() as session:
        assert session.scalar(select(Commit.sha)) == PR_HEAD


def gl_diff(path: str, **flags: Any) -> dict[str, Any]:
    return {
        "old_path": flags.pop("old_path", path),
        "new_path": path,
        "new_file": False,
        "renamed_file": False,
        "deleted_file": False,
        "diff": "@@ -1,2 +1,3 @@\n-a\n+b\n+c\n",
        **flags,
    }


def test_a_merge_request_hook_gets_its_diffs_page_by_page(
    client: TestClient, database: Database, server: FakeProvider, gitlab_samples: Path
) -> None:
    register(database, Provider.GITLAB, "gitlabhq/gitlab-test", server.url)
    path = "/projects/14/merge_requests/1/diffs"
    server.on(
        f"{path}?per_page=100",
        json_answer(
            [gl_diff("README.md"), gl_diff("doc/new.md", new_file=True)], **{"X-Next-Page": "2"}
        ),
    )
    server.on(
        f"{path}?per_page=100&page=2",
        json_answer(
            [
                gl_diff("old.txt", deleted_file=True),
                gl_diff("b.txt", renamed_file=True, old_path="a.txt"),
            ],
            **{"X-Next-Page": ""},
        ),
    )
    body = sample(gitlab_samples, "merge-request-hook-open.json")
    response = client.post(
        "/webhooks/gitlab", content=body, headers=gitlab_headers(event="Merge Request Hook")
    )
    assert response.json()["status"] == "queued"
    assert handle(database, response.json()["event_id"]) == (EventStatus.HANDLED, None)
    assert files_of(database, MR_HEAD) == [
        ("README.md", "modified", None, 2),
        ("b.txt", "renamed", "a.txt", 2),
        ("doc/new.md", "added", None, 2),
        ("old.txt", "removed", None, 2),
    ]
    assert [seen.headers["PRIVATE-TOKEN"] for seen in server.requests_to(path)] == [TOKEN] * 2
    with database.session() as session:
        commit = session.scalar(select(Commit).where(Commit.sha == MR_HEAD))
        assert commit is not None
        assert (commit.branch, commit.message, commit.author_name) == (
            "ms-viewport",
            "fixed readme",
            "GitLab dev user",
        )


def test_a_merge_request_update_without_new_commits_is_dropped(
    client: TestClient, database: Database, gitlab_samples: Path
) -> None:
    register(database, Provider.GITLAB, "gitlabhq/gitlab-test", None)
    body = sample(gitlab_samples, "merge-request-hook-open.json")
    update = body.replace(b'"action": "open"', b'"action": "update"')
    assert update != body
    response = client.post(
        "/webhooks/gitlab", content=update, headers=gitlab_headers(event="Merge Request Hook")
    )
    assert response.json() == {"status": "ignored", "event_id": None}


GL_LISTED = ["b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327", MR_HEAD]
GL_OLDER = ["1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222"]
GL_BEFORE = "95790bf891e76fee5e1747ab589903a6a1f80f22"


def test_a_cut_gitlab_push_gets_its_commits_and_files_from_the_comparison(
    client: TestClient, database: Database, server: FakeProvider, gitlab_samples: Path
) -> None:
    register(database, Provider.GITLAB, "mike/diaspora", server.url)
    chain = [GL_BEFORE, *GL_OLDER, *GL_LISTED]
    server.on(
        f"/projects/15/repository/compare?from={GL_BEFORE}&to={MR_HEAD}",
        json_answer(
            {
                "commits": [
                    {"id": sha, "parent_ids": [chain[number]], "author_name": "Dev", "message": "m"}
                    for number, sha in enumerate(chain[1:])
                ],
                "diffs": [gl_diff("CHANGELOG"), gl_diff("lib/older.rb", new_file=True)],
            }
        ),
    )
    body = sample(gitlab_samples, "push-hook.json")  # 2 of 4 commits listed
    response = client.post("/webhooks/gitlab", content=body, headers=gitlab_headers())
    assert handle(database, response.json()["event_id"]) == (EventStatus.HANDLED, None)
    with database.session() as session:
        parents = {
            sha: parent for sha, parent in session.execute(select(Commit.sha, Commit.parent_sha))
        }
    assert parents == {sha: chain[number] for number, sha in enumerate(chain[1:])}
    assert files_of(database, MR_HEAD) == [
        ("CHANGELOG", "added", None, None),  # as the push listed it
        ("app/controller/application.rb", "modified", None, None),
        ("lib/older.rb", "added", None, 2),
    ]


def test_a_forced_github_push_gets_the_head_s_files_from_the_comparison(
    client: TestClient, database: Database, server: FakeProvider, github_samples: Path
) -> None:
    register(database, Provider.GITHUB, "flightctl/flightctl", server.url)
    before, after = FORCED
    base = "3333333333333333333333333333333333333333"
    path = f"/repos/flightctl/flightctl/compare/{before}...{after}"
    page2 = f"{path}?per_page=100&page=2"
    server.on(
        f"{path}?per_page=100",
        json_answer(
            {"commits": [], "files": [gh_file("internal/api/server.go", "added")]},
            Link=f'<{{base}}{page2}>; rel="next"',
        ),
    )
    server.on(
        page2,
        json_answer(
            {
                "commits": [
                    {
                        "sha": after,
                        "parents": [{"sha": base}],
                        "commit": {
                            "author": {"name": "Dev", "date": "2026-12-01T10:00:00Z"},
                            "message": "rewritten",
                        },
                    }
                ]
            }
        ),
    )
    body = sample(github_samples, "push-forced.json")
    response = client.post("/webhooks/github", content=body, headers=github_headers(body))
    assert handle(database, response.json()["event_id"]) == (EventStatus.HANDLED, None)
    assert files_of(database, after) == [
        ("internal/api/server.go", "added", None, 2),
        ("internal/service/enrollmentrequest.go", "modified", None, None),
    ]
    with database.session() as session:
        assert session.scalar(select(Commit.parent_sha).where(Commit.sha == after)) == base


def test_a_plan_scored_without_the_push_s_files_says_so_in_the_api_and_plan_log(
    client: TestClient,
    database: Database,
    db_url: str,
    server: FakeProvider,
    github_samples: Path,
    tmp_path: Path,
) -> None:
    register(database, Provider.GITHUB, "flightctl/flightctl", server.url)
    with database.session() as session:
        repository = repos.resolve_repository(session, full_name="flightctl/flightctl")
        token = tokens.create_token(
            session, repository=repository, scopes=(tokens.Scope.PLANS_READ,), name="ci"
        ).token
    before, after = FORCED
    compare = f"/repos/flightctl/flightctl/compare/{before}...{after}"
    server.on(f"{compare}?per_page=100", json_answer({"message": "Server Error"}, 502))
    body = sample(github_samples, "push-forced.json")
    response = client.post("/webhooks/github", content=body, headers=github_headers(body))
    status, error = handle(database, response.json()["event_id"])
    answered = f"GET {server.url.removeprefix('http://')}{compare}: HTTP 502 after 2 attempts"
    assert (status, error) == (EventStatus.HANDLED, answered)
    # Handled with the files the payload lists, and a plan is still served.
    assert files_of(database, after) == [
        ("internal/service/enrollmentrequest.go", "modified", None, None)
    ]
    note = f"changed files unknown ({answered}); scored with the push's own list"
    collected = ["tests/test_api.py::test_get", "tests/test_api.py::test_put"]
    served = client.post(
        f"/api/v1/repos/flightctl/flightctl/plans/{after}",
        json={"tests": collected},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert served.status_code == 200, served.text
    plan = served.json()
    assert (plan["status"], plan["changes_note"]) == ("heuristic", note)
    assert sorted(test["test"] for test in plan["tests"]) == collected

    command = partial(riskrank, env=clean_env(RISKRANK_DATABASE_URL=db_url), cwd=tmp_path)
    (tmp_path / "tests.txt").write_text("".join(f"{name}\n" for name in collected))
    shown, as_json, planned = run_together(
        lambda: command("plan-log", "show", "flightctl/flightctl", after),
        lambda: command("plan-log", "show", "flightctl/flightctl", after, "--json"),
        lambda: command("plan", "flightctl/flightctl", after, "--tests-file", "tests.txt"),
    )
    assert planned.returncode == 0, planned.explain()
    assert sorted(planned.stdout.splitlines()) == collected
    assert f"riskrank: {note}\n" in planned.stderr
    assert shown.returncode == 0, shown.explain()
    assert f"changes: {note}" in one_line(shown.stdout)
    assert as_json.returncode == 0, as_json.explain()
    assert json.loads(as_json.stdout)["changes_note"] == note

    # Files fetched for the same head later (a pull request's) clear the note.
    with database.session() as session:
        event = session.get_one(CiEvent, response.json()["event_id"])
        event.status = EventStatus.PENDING
    server.on(
        f"{compare}?per_page=100",
        json_answer({"commits": [], "files": [gh_file("internal/api/server.go")]}),
    )
    assert handle(database, response.json()["event_id"]) == (EventStatus.HANDLED, None)
    with database.session() as session:
        assert session.scalar(select(Commit.changes_note).where(Commit.sha == after)) is None


def test_a_complete_push_asks_nothing(
    client: TestClient, database: Database, server: FakeProvider, github_samples: Path
) -> None:
    register(database, Provider.GITHUB, "binkkatal/sample_app", server.url)
    body = sample(github_samples, "push-normal-branch.json")
    response = client.post("/webhooks/github", content=body, headers=github_headers(body))
    assert response.json()["status"] == "queued"
    with database.session() as session:
        assert changes.change_job(session, response.json()["event_id"]) is None
    assert server.seen == []


def test_a_plan_scored_before_the_files_is_scored_again_unless_ci_followed_it(
    database: Database,
) -> None:
    from scheduler.models import Plan
    from scheduler.providers_api.changes import FileDiff
    from scheduler.services import scoring
    from tests.planning.data import add_commit, make_repository

    repository_id = make_repository(database)
    commit_id = add_commit(database, repository_id, "cd" * 20)
    with database.session() as session:
        first = scoring.score_commit(session, commit_id)
        assert first is not None
        first_id = first.id
    with database.session() as session:
        added = changes.add_files(
            session, commit_id, (FileDiff("src/net.py", FileStatus.MODIFIED),)
        )
        assert added == 1
        # The same files again add nothing and leave the plans alone.
        assert (
            changes.add_files(session, commit_id, (FileDiff("src/net.py", FileStatus.MODIFIED),))
            == 0
        )
    with database.session() as session:
        assert session.get_one(Plan, first_id).policy is None
        second = scoring.score_commit(session, commit_id)
        assert second is not None
        second_id = second.id
    assert second_id != first_id
    # Once CI followed a plan (a policy applied), new files leave it as served.
    with database.session() as session:
        session.get_one(Plan, second_id).policy = {"mode": "order"}
    with database.session() as session:
        changes.add_files(session, commit_id, (FileDiff("src/io.py", FileStatus.ADDED),))
    with database.session() as session:
        third = scoring.score_commit(session, commit_id)
        assert third is not None
        assert third.id == second_id


BEFORE, AFTER = "b" * 40, "a" * 40


def github_push(**changes_: Any) -> dict[str, Any]:
    return {
        "ref": "refs/heads/main",
        "before": BEFORE,
        "after": AFTER,
        "repository": {"full_name": "o/r"},
        "commits": [{"id": AFTER, "modified": ["x.py"]}],
        **changes_,
    }


@pytest.mark.parametrize(
    ("payload", "span"),
    [
        pytest.param(github_push(), None, id="complete"),
        pytest.param(github_push(forced=True), (BEFORE, AFTER), id="forced"),
        pytest.param(github_push(commits=[]), (BEFORE, AFTER), id="no-commit"),
        pytest.param(github_push(commits=[{"id": AFTER}]), (BEFORE, AFTER), id="no-file"),
        pytest.param(
            github_push(commits=[{"id": f"{n:040x}", "added": ["f"]} for n in range(2048)]),
            (BEFORE, AFTER),
            id="2048-commits",
        ),
        pytest.param(
            github_push(commits=[{"id": f"{n:040x}", "added": ["f"]} for n in range(2047)]),
            None,
            id="2047-commits",
        ),
        pytest.param(github_push(before="0" * 40, commits=[]), None, id="new-branch"),
        pytest.param(github_push(after="0" * 40, deleted=True), None, id="deleted"),
        pytest.param(github_push(ref="refs/tags/v1", commits=[]), None, id="tag"),
    ],
)
def test_which_github_pushes_are_compared(
    payload: dict[str, Any], span: tuple[str, str] | None
) -> None:
    assert changes.push_range(Provider.GITHUB, payload) == span


def gitlab_push(**changes_: Any) -> dict[str, Any]:
    return {
        "object_kind": "push",
        "ref": "refs/heads/main",
        "before": BEFORE,
        "after": AFTER,
        "checkout_sha": AFTER,
        "total_commits_count": 1,
        "commits": [{"id": AFTER, "added": ["x.py"], "modified": [], "removed": []}],
        **changes_,
    }


@pytest.mark.parametrize(
    ("payload", "span"),
    [
        pytest.param(gitlab_push(), None, id="complete"),
        pytest.param(gitlab_push(total_commits_count=25), (BEFORE, AFTER), id="cut"),
        pytest.param(gitlab_push(commits=[], total_commits_count=0), (BEFORE, AFTER), id="none"),
        pytest.param(gitlab_push(before="0" * 40), None, id="new-branch"),
        pytest.param(
            gitlab_push(after="0" * 40, checkout_sha=None, commits=[]), None, id="deleted"
        ),
    ],
)
def test_which_gitlab_pushes_are_compared(
    payload: dict[str, Any], span: tuple[str, str] | None
) -> None:
    assert changes.push_range(Provider.GITLAB, payload) == span


@pytest.mark.parametrize(
    ("attributes", "wanted"),
    [
        ({"action": "open"}, True),
        ({"action": "reopen"}, True),
        ({"action": "update", "oldrev": "c" * 40}, True),
        ({"action": "update"}, False),
        ({"action": "approved"}, False),
        ({"action": "merge"}, False),
        ({"action": "close"}, False),
    ],
)
def test_which_merge_request_hooks_bring_a_head(attributes: dict[str, str], wanted: bool) -> None:
    assert changes.wanted_pull_request(Provider.GITLAB, {"object_attributes": attributes}) is wanted


@pytest.mark.parametrize(
    ("answers", "retryable", "retry_after"),
    [
        pytest.param([json_answer({"message": "Bad Gateway"}, 502)], True, None, id="502"),
        pytest.param(
            [json_answer({"message": "slow down"}, 429, **{"Retry-After": "120"})],
            True,
            120.0,
            id="429",
        ),
        pytest.param([Answer(200, b"[]", delay=2.5)], True, None, id="slower-than-the-timeout"),
        pytest.param([json_answer({"message": "Bad credentials"}, 401)], False, None, id="401"),
        pytest.param([json_answer({"files": "none"})], False, None, id="not-a-list"),
    ],
)
def test_what_the_provider_failed_with_says_whether_to_ask_again(
    client: TestClient,
    database: Database,
    server: FakeProvider,
    github_samples: Path,
    answers: list[Any],
    retryable: bool,
    retry_after: float | None,
) -> None:
    register(database, Provider.GITHUB, "Codertocat/Hello-World", server.url)
    server.on("/repos/Codertocat/Hello-World/pulls/2/files", *answers)
    body = sample(github_samples, "pull_request-opened.json")
    response = client.post(
        "/webhooks/github", content=body, headers=github_headers(body, event="pull_request")
    )
    with database.session() as session:
        job = changes.change_job(session, response.json()["event_id"])
    assert job is not None
    assert job.attempts == 0
    with pytest.raises(changes.FetchFailed) as failed:
        changes.fetch(job, http=FAST)
    assert (failed.value.retryable, failed.value.retry_after) == (retryable, retry_after)


def test_a_502_then_an_answer_within_one_call_is_retried_by_the_client(
    client: TestClient, database: Database, server: FakeProvider, github_samples: Path
) -> None:
    register(database, Provider.GITHUB, "Codertocat/Hello-World", server.url)
    path = "/repos/Codertocat/Hello-World/pulls/2/files"
    server.on(
        path, json_answer({"message": "Bad Gateway"}, 502), json_answer([gh_file("src/app.py")])
    )
    body = sample(github_samples, "pull_request-opened.json")
    response = client.post(
        "/webhooks/github", content=body, headers=github_headers(body, event="pull_request")
    )
    assert handle(database, response.json()["event_id"]) == (EventStatus.HANDLED, None)
    assert files_of(database, PR_HEAD) == [("src/app.py", "modified", None, 2)]
    assert len(server.requests_to(path)) == 2


def _failure(retryable: bool = True, retry_after: float | None = None) -> changes.FetchFailed:
    return changes.FetchFailed("HTTP 502", retryable=retryable, retry_after=retry_after)


@pytest.mark.parametrize(
    ("failure", "attempts", "wait"),
    [
        pytest.param(_failure(), 0, 30.0, id="first"),
        pytest.param(_failure(), 2, 120.0, id="doubled"),
        pytest.param(_failure(), 3, None, id="attempts-spent"),
        pytest.param(_failure(retry_after=500.0), 0, 500.0, id="provider-asks-longer"),
        pytest.param(_failure(retry_after=5.0), 1, 60.0, id="provider-asks-shorter"),
        pytest.param(_failure(retryable=False), 0, None, id="refused"),
    ],
)
def test_the_next_try_doubles_its_wait_and_is_bounded(
    failure: changes.FetchFailed, attempts: int, wait: float | None
) -> None:
    assert (
        changes.next_try(
            failure, attempts=attempts, max_attempts=4, first_wait=30.0, max_wait=600.0
        )
        == wait
    )


def test_the_doubled_wait_stops_at_its_bound() -> None:
    waits = [
        changes.next_try(_failure(), attempts=n, max_attempts=9, first_wait=30, max_wait=100)
        for n in range(4)
    ]
    assert waits == [30.0, 60.0, 100.0, 100.0]
