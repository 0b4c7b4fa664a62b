"""The providers' API client against a local server answering like GitHub's
and GitLab's: pagination, retries of what is worth retrying, waits the
provider asks for, timeouts, redirects that keep the token home."""

from __future__ import annotations

import time

import pytest

from scheduler.providers_api import github, gitlab
from scheduler.providers_api.http import ApiClient, HttpSettings, ProviderApiError
from tests.fake_provider import Answer, FakeProvider, json_answer

TOKEN = "ghp_ClientTestToken0123456789"
RUN = "/repos/octo-org/octo-repo/actions/runs/7/artifacts"
FAST = HttpSettings(
    connect_timeout=1.0, read_timeout=0.3, max_attempts=3, backoff_seconds=0.01, total_seconds=10
)
# An answer this slow (seconds) is one the client must give up on.
SLOW = 6.0


class Sleeps:
    """Records the waits instead of sleeping them (fast tests, exact figures)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def github_client(server: FakeProvider, sleeps: Sleeps, settings: HttpSettings = FAST) -> ApiClient:
    api = github.client(server.url, TOKEN, settings)
    api.sleep = sleeps
    return api


def artifact(number: int, name: str, base: str = "{base}") -> dict[str, object]:
    return {
        "id": number,
        "name": name,
        "size_in_bytes": 10,
        "expired": False,
        "archive_download_url": f"{base}/repos/octo-org/octo-repo/actions/artifacts/{number}/zip",
    }


def test_artifacts_are_listed_over_pages_linked_by_link(server: FakeProvider) -> None:
    page2 = f"{RUN}?per_page=100&page=2"
    server.on(
        f"{RUN}?per_page=100",
        json_answer(
            {"total_count": 3, "artifacts": [artifact(1, "junit-a"), artifact(2, "coverage")]},
            Link=f'<{{base}}{page2}>; rel="next", <{{base}}{page2}>; rel="last"',
        ),
    )
    server.on(page2, json_answer({"total_count": 3, "artifacts": [artifact(3, "junit-b")]}))
    sleeps = Sleeps()
    with github_client(server, sleeps) as api:
        listed = github.run_artifacts(api, "octo-org/octo-repo", 7)
    assert [(a.id, a.name) for a in listed] == [(1, "junit-a"), (2, "coverage"), (3, "junit-b")]
    assert all(seen.headers["Authorization"] == f"Bearer {TOKEN}" for seen in server.seen)
    assert server.seen[0].headers["X-GitHub-Api-Version"] == github.API_VERSION
    assert sleeps.waits == []


def test_429_waits_its_retry_after_and_502_backs_off(server: FakeProvider) -> None:
    server.on(
        RUN,
        json_answer({"message": "slow down"}, 429, **{"Retry-After": "2"}),
        Answer(502, b"bad gateway"),
        json_answer({"artifacts": []}),
    )
    sleeps = Sleeps()
    with github_client(server, sleeps) as api:
        assert github.run_artifacts(api, "octo-org/octo-repo", 7) == []
    assert sleeps.waits == [2.0, 0.02]  # as asked; then the backoff of a 2nd try
    assert len(server.requests_to(RUN)) == 3


def test_403_rate_limit_waits_until_the_reset(server: FakeProvider) -> None:
    reset = int(time.time()) + 3
    server.on(
        RUN,
        json_answer(
            {"message": "API rate limit exceeded"},
            403,
            **{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
        ),
        json_answer({"artifacts": [artifact(1, "junit")]}),
    )
    sleeps = Sleeps()
    with github_client(server, sleeps) as api:
        assert len(github.run_artifacts(api, "octo-org/octo-repo", 7)) == 1
    [wait] = sleeps.waits
    assert 1.5 < wait <= 3.0


def test_a_reset_past_the_time_limit_gives_up_at_once_saying_when(server: FakeProvider) -> None:
    reset = int(time.time()) + 3600
    server.on(
        RUN,
        json_answer(
            {"message": "API rate limit exceeded"},
            403,
            **{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
        ),
    )
    sleeps = Sleeps()
    with github_client(server, sleeps) as api, pytest.raises(ProviderApiError) as raised:
        github.run_artifacts(api, "octo-org/octo-repo", 7)
    assert raised.value.retryable
    assert raised.value.status == 403
    assert (raised.value.retry_after or 0) > 3500
    assert "rate limited" in raised.value.message
    assert sleeps.waits == []
    assert len(server.requests_to(RUN)) == 1


def test_a_403_that_is_a_permission_is_not_tried_again(server: FakeProvider) -> None:
    server.on(RUN, json_answer({"message": "Resource not accessible by integration"}, 403))
    with github_client(server, Sleeps()) as api, pytest.raises(ProviderApiError) as raised:
        github.run_artifacts(api, "octo-org/octo-repo", 7)
    assert not raised.value.retryable
    assert len(server.requests_to(RUN)) == 1


@pytest.mark.parametrize("status", [401, 404])
def test_client_errors_fail_at_once_without_the_token(server: FakeProvider, status: int) -> None:
    server.on(RUN, json_answer({"message": "Bad credentials"}, status))
    with github_client(server, Sleeps()) as api, pytest.raises(ProviderApiError) as raised:
        github.run_artifacts(api, "octo-org/octo-repo", 7)
    assert not raised.value.retryable
    assert f"HTTP {status}" in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_an_answer_slower_than_the_timeout_is_tried_again(server: FakeProvider) -> None:
    server.on(
        RUN,
        Answer(200, b'{"artifacts": []}', delay=SLOW),
        json_answer({"artifacts": [artifact(1, "junit")]}),
    )
    sleeps = Sleeps()
    started = time.monotonic()
    with github_client(server, sleeps) as api:
        assert len(github.run_artifacts(api, "octo-org/octo-repo", 7)) == 1
    # The slow answer was not waited for: the read timeout is 0.3 s, and the
    # margin to SLOW leaves room for a loaded machine (once 1.8 s in CI).
    assert time.monotonic() - started < SLOW / 2
    assert sleeps.waits == [0.01]


def test_always_slow_or_failing_gives_up_retryable_after_its_attempts(
    server: FakeProvider,
) -> None:
    server.on(RUN, Answer(200, b"{}", delay=1.0))
    with github_client(server, Sleeps()) as api, pytest.raises(ProviderApiError) as raised:
        github.run_artifacts(api, "octo-org/octo-repo", 7)
    assert raised.value.retryable
    assert "after 3 attempts" in raised.value.message
    server.on(RUN, Answer(503))
    with github_client(server, Sleeps()) as api, pytest.raises(ProviderApiError) as raised:
        github.run_artifacts(api, "octo-org/octo-repo", 7)
    assert (raised.value.retryable, raised.value.status) == (True, 503)


def test_the_operation_time_limit_bounds_the_retries(server: FakeProvider) -> None:
    server.on(RUN, Answer(502))
    settings = HttpSettings(
        read_timeout=1, max_attempts=100, backoff_seconds=0.05, total_seconds=0.5
    )
    started = time.monotonic()
    with github_client(server, Sleeps(), settings) as api:
        api.sleep = time.sleep
        with pytest.raises(ProviderApiError) as raised:
            github.run_artifacts(api, "octo-org/octo-repo", 7)
    assert raised.value.retryable
    assert time.monotonic() - started < 2.0


def test_a_download_follows_the_redirect_without_the_token_elsewhere(
    server: FakeProvider,
) -> None:
    # localhost and 127.0.0.1 are the same server but another host to the
    # client, as GitHub's storage is to api.github.com.
    storage = server.url.replace("127.0.0.1", "localhost") + "/storage/blob?sig=abc"
    zip_path = "/repos/octo-org/octo-repo/actions/artifacts/1/zip"
    server.on(zip_path, Answer(302, headers={"Location": storage}))
    server.on("/storage/blob", Answer(200, b"PK-bytes"))
    with github_client(server, Sleeps()) as api:
        listed = github.Artifact(1, "junit", 8, False, server.url + zip_path)
        assert github.download_artifact(api, listed, max_bytes=100) == b"PK-bytes"
    [asked] = server.requests_to(zip_path)
    [fetched] = server.requests_to("/storage/blob")
    assert asked.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "Authorization" not in fetched.headers


def test_a_listed_download_url_on_another_host_is_not_sent_the_token(
    server: FakeProvider,
) -> None:
    server.on(RUN, json_answer({"artifacts": [artifact(5, "junit", "https://evil.example")]}))
    with github_client(server, Sleeps()) as api:
        [listed] = github.run_artifacts(api, "octo-org/octo-repo", 7)
    assert listed.download_url == f"{server.url}/repos/octo-org/octo-repo/actions/artifacts/5/zip"


def test_a_download_over_the_limit_is_refused(server: FakeProvider) -> None:
    server.on("/blob", Answer(200, b"x" * 1000))
    with github_client(server, Sleeps()) as api, pytest.raises(ProviderApiError, match="limit"):
        api.download("/blob", max_bytes=100)


def test_gitlab_pages_by_x_next_page_with_its_private_token(server: FakeProvider) -> None:
    jobs = "/projects/42/pipelines/9/jobs"
    server.on(f"{jobs}?per_page=2", json_answer([{"id": 1}, {"id": 2}], **{"X-Next-Page": "2"}))
    server.on(f"{jobs}?per_page=2&page=2", json_answer([{"id": 3}], **{"X-Next-Page": ""}))
    with gitlab.client(server.url + "/", "glpat-secret", FAST) as api:
        pages = list(api.pages(jobs, params={"per_page": 2}))
    assert [job["id"] for page in pages for job in page] == [1, 2, 3]
    assert all(seen.headers["PRIVATE-TOKEN"] == "glpat-secret" for seen in server.seen)


def test_gitlab_test_report_by_project_path(server: FakeProvider) -> None:
    path = "/projects/group%2Fsub%2Fapp/pipelines/9/test_report"
    server.on(path, json_answer({"total_count": 0, "test_suites": []}))
    with gitlab.client(server.url, "glpat-secret", FAST) as api:
        report = gitlab.pipeline_test_report(api, gitlab.project_ref(None, "group/sub/app"), 9)
    assert report == {"total_count": 0, "test_suites": []}
    assert gitlab.project_ref(42, "group/sub/app") == "42"


def test_gitlab_429_waits_until_its_ratelimit_reset(server: FakeProvider) -> None:
    """GitLab names its reset header RateLimit-Reset (epoch seconds), with
    no Retry-After: the wait runs to the reset."""
    path = "/projects/42/pipelines/9/test_report"
    reset = int(time.time()) + 3
    server.on(
        path,
        json_answer(
            {"message": "Retry later"},
            429,
            **{"RateLimit-Remaining": "0", "RateLimit-Reset": str(reset)},
        ),
        json_answer({"total_count": 0, "test_suites": []}),
    )
    sleeps = Sleeps()
    with gitlab.client(server.url, "glpat-secret", FAST) as api:
        api.sleep = sleeps
        assert gitlab.pipeline_test_report(api, "42", 9) == {"total_count": 0, "test_suites": []}
    [wait] = sleeps.waits
    assert 1.5 < wait <= 3.0
    assert len(server.requests_to(path)) == 2


def test_a_status_post_is_sent_again_after_a_502_with_its_body(server: FakeProvider) -> None:
    path = "/repos/octo-org/octo-repo/statuses/" + "a" * 40
    server.on(path, Answer(502), json_answer({"id": 1}, 201))
    sleeps = Sleeps()
    with github_client(server, sleeps) as api:
        github.post_status(
            api,
            "octo-org/octo-repo",
            "a" * 40,
            state="success",
            description="x" * 200,
            context="riskrank",
        )
    sent = server.requests_to(path)
    assert [seen.method for seen in sent] == ["POST", "POST"]
    assert sent[0].body == sent[1].body
    assert sent[1].body == (
        b'{"state": "success", "description": "' + b"x" * 140 + b'", "context": "riskrank"}'
    )
    assert sleeps.waits == [0.01]


def test_a_compare_ignores_what_it_cannot_store(server: FakeProvider) -> None:
    path = "/repos/o/r/compare/" + "b" * 40 + "..." + "a" * 40
    server.on(
        path,
        json_answer(
            {
                "commits": [{"sha": "a" * 40, "parents": []}, {"sha": 7}, "junk"],
                "files": [
                    {"filename": "ok.py", "status": "changed", "additions": -1},
                    {"filename": "nul\u0000.py", "status": "added"},
                    {"filename": "x" * 3000, "status": "added"},
                ],
            }
        ),
    )
    with github_client(server, Sleeps()) as api:
        comparison = github.compare(api, "o/r", "b" * 40, "a" * 40)
    assert [commit.sha for commit in comparison.commits] == ["a" * 40]
    assert comparison.commits[0].parent_sha is None
    assert [(diff.path, diff.status.value, diff.additions) for diff in comparison.files] == [
        ("ok.py", "modified", None)
    ]
