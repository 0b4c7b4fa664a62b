"""Parsing real GitLab payloads (../shared/samples/dev/gitlab) and small
hand-written ones."""

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scheduler.ingest import gitlab
from scheduler.ingest.errors import MalformedPayload
from scheduler.models import FileStatus


def load(directory: Path, name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((directory / name).read_text())
    return document


# Every sample, with the project it names (None: it names none).
SAMPLES = {
    "push-hook.json": "mike/diaspora",
    "tag-push-hook-created.json": "jsmith/example",
    "merge-request-hook-open.json": "gitlabhq/gitlab-test",
    "pipeline-hook-success-5-builds.json": "gitlab-org/gitlab-test",
    "pipeline-hook-mr-failed.json": "redhat/centos-stream/rpms/luksmeta",
    "job-hook-script-failure.json": None,
    "build-hook-legacy.json": None,
}


def test_the_samples_are_the_ones_these_tests_know(gitlab_samples: Path) -> None:
    assert sorted(path.name for path in gitlab_samples.glob("*.json")) == sorted(SAMPLES)


@pytest.mark.parametrize(("name", "path"), SAMPLES.items())
def test_project_path_of_every_sample(gitlab_samples: Path, name: str, path: str | None) -> None:
    assert gitlab.project_path(load(gitlab_samples, name)) == path


def test_push_hook_sample(gitlab_samples: Path) -> None:
    payload = load(gitlab_samples, "push-hook.json")
    push = gitlab.parse_push(payload)

    assert push.branch == "master"
    assert not push.deleted
    assert [commit.sha for commit in push.commits] == [
        "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
        "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    ]
    first, second = push.commits
    # total_commits_count is 4: two older commits are not listed, so the
    # first listed one does not follow `before`.
    assert gitlab.total_commits(payload) == 4
    assert first.parent_sha is None
    assert second.parent_sha == first.sha
    assert first.author_name == "Jordi Mallach"
    assert first.author_time == datetime(2011, 12, 12, 12, 27, 31, tzinfo=UTC)
    assert second.message == "fixed readme"
    for commit in push.commits:
        assert [(f.path, f.status) for f in commit.files] == [
            ("CHANGELOG", FileStatus.ADDED),
            ("app/controller/application.rb", FileStatus.MODIFIED),
        ]
    assert sum(len(commit.files) for commit in push.commits) == 4
    assert gitlab.head_sha(payload) == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    assert gitlab.default_branch(payload) == "master"


def test_the_push_hook_sample_complete_chains_to_before(gitlab_samples: Path) -> None:
    payload = load(gitlab_samples, "push-hook.json")
    payload["total_commits_count"] = 2
    first, second = gitlab.parse_push(payload).commits
    assert first.parent_sha == "95790bf891e76fee5e1747ab589903a6a1f80f22"
    assert second.parent_sha == first.sha


def test_tag_push_sample_names_its_commit(gitlab_samples: Path) -> None:
    payload = load(gitlab_samples, "tag-push-hook-created.json")
    assert gitlab.head_sha(payload) == "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7"
    assert gitlab.total_commits(payload) == 0
    # A tag push is not a Push Hook: reading it as one is refused.
    with pytest.raises(MalformedPayload, match="object_kind push"):
        gitlab.parse_push(payload)


def _push(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "object_kind": "push",
        "before": "b" * 40,
        "after": "d" * 40,
        "checkout_sha": "d" * 40,
        "ref": "refs/heads/main",
        "project": {"path_with_namespace": "group/sub/app", "default_branch": "main"},
        "commits": [
            {"id": "c" * 40, "message": "one", "added": ["a.py"], "modified": [], "removed": []},
            {"id": "d" * 40, "message": "two", "removed": ["a.py"], "modified": ["b.py"]},
        ],
        "total_commits_count": 2,
    }
    payload.update(changes)
    return payload


def test_commits_chain_to_each_other_in_push_order() -> None:
    push = gitlab.parse_push(_push())
    assert [(c.sha[0], c.parent_sha and c.parent_sha[0]) for c in push.commits] == [
        ("c", "b"),
        ("d", "c"),
    ]
    assert {f.path: f.status for f in push.commits[1].files} == {
        "a.py": FileStatus.REMOVED,
        "b.py": FileStatus.MODIFIED,
    }


def test_new_branch_has_no_known_parent() -> None:
    push = gitlab.parse_push(_push(before="0" * 40))
    assert push.commits[0].parent_sha is None
    assert push.commits[1].parent_sha == "c" * 40


def test_branch_created_at_an_existing_commit_keeps_its_head() -> None:
    push = gitlab.parse_push(
        _push(before="0" * 40, after="e" * 40, checkout_sha="e" * 40, commits=[])
    )
    assert [(c.sha, c.parent_sha, c.files) for c in push.commits] == [("e" * 40, None, ())]


def test_deleted_branch_brings_no_commit() -> None:
    payload = _push(after="0" * 40, checkout_sha=None, commits=[], total_commits_count=0)
    push = gitlab.parse_push(payload)
    assert push.deleted
    assert push.commits == ()
    assert gitlab.head_sha(payload) is None


def test_head_is_after_when_checkout_sha_is_missing() -> None:
    payload = _push()
    del payload["checkout_sha"]
    assert gitlab.head_sha(payload) == "d" * 40
    assert [c.sha for c in gitlab.parse_push(payload).commits] == ["c" * 40, "d" * 40]


def test_nested_project_path() -> None:
    assert gitlab.project_path(_push()) == "group/sub/app"
    assert gitlab.project_path({"project": {"path_with_namespace": "no-slash"}}) is None
    assert gitlab.project_path({"project": "group/app"}) is None


@pytest.mark.parametrize(
    "payload",
    [
        {},
        _push(object_kind="tag_push"),
        _push(ref=None),
        _push(commits="nope"),
        _push(commits=[{"message": "no id"}]),
        _push(commits=[{"id": "a" * 40, "added": "x"}]),
    ],
)
def test_malformed_pushes_are_refused(payload: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        gitlab.parse_push(payload)


def test_delivery_id_prefers_the_idempotency_key_then_the_event_uuid_then_the_body() -> None:
    body = b'{"object_kind": "push"}'
    assert gitlab.delivery_id(idempotency_key="k", event_uuid="u", body=body) == "k"
    assert gitlab.delivery_id(idempotency_key=" ", event_uuid="u", body=body) == "u"
    hashed = gitlab.delivery_id(idempotency_key=None, event_uuid=None, body=body)
    assert hashed == "sha256:" + hashlib.sha256(body).hexdigest()
    assert gitlab.delivery_id(idempotency_key=None, event_uuid=None, body=body + b" ") != hashed


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "pipeline-hook-success-5-builds.json",
            gitlab.Pipeline(
                id=31,
                project_id=1,
                sha="bcbb5ec396a2c0f828686f14fac9b80b780504f2",
                ref="master",
                status="success",
                finished_at="2016-08-12 15:26:29 UTC",
            ),
        ),
        (
            "pipeline-hook-mr-failed.json",
            gitlab.Pipeline(
                id=384095584,
                project_id=23680558,
                sha="ee58e259da263ecb4c1f0129be7aef8cfd4dedd6",
                ref="9-c9s-src-5",
                status="failed",
                finished_at="2021-10-07 08:18:59 UTC",
            ),
        ),
    ],
)
def test_pipeline_hook_samples(gitlab_samples: Path, name: str, expected: gitlab.Pipeline) -> None:
    payload = load(gitlab_samples, name)
    assert gitlab.is_finished_pipeline(payload)
    assert gitlab.parse_pipeline(payload) == expected
    assert gitlab.parse_pipeline(payload).run_key == f"gitlab-pipeline-{expected.id}"


def test_a_running_pipeline_is_not_pulled(gitlab_samples: Path) -> None:
    payload = load(gitlab_samples, "pipeline-hook-success-5-builds.json")
    payload["object_attributes"]["status"] = "running"
    assert not gitlab.is_finished_pipeline(payload)


def test_a_test_report_is_written_back_as_the_junit_it_came_from() -> None:
    from scheduler.ingest.junit import parse_junit
    from scheduler.models import Outcome

    report = {
        "total_count": 4,
        "test_suites": [
            {
                "name": "rspec",
                "test_cases": [
                    {
                        "status": "success",
                        "name": "adds",
                        "classname": "spec.math",
                        "execution_time": 0.5,
                    },
                    {
                        "status": "failed",
                        "name": "divides <by> zero & more",
                        "classname": "spec.math",
                        "file": "spec/math_spec.rb",
                        "execution_time": 1,
                        "stack_trace": "ZeroDivisionError",
                    },
                    {"status": "skipped", "name": "later", "classname": "spec.math"},
                    {"status": "error", "name": "boots", "classname": "spec.app"},
                    {"status": "success"},  # no name: not a test
                ],
            }
        ],
    }
    results = parse_junit(gitlab.junit_of_test_report(report))
    assert [(r.test, r.outcome, r.duration) for r in results] == [
        ("spec.math::adds", Outcome.PASSED, 0.5),
        ("spec/math_spec.rb::spec.math::divides <by> zero & more", Outcome.FAILED, 1.0),
        ("spec.math::later", Outcome.SKIPPED, None),
        ("spec.app::boots", Outcome.ERROR, None),
    ]
    assert "ZeroDivisionError" in str(results[1].message)
