"""Reading the generic CI event riskrank defines (scheduler/ingest/generic.py)."""

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from scheduler.ingest import generic
from scheduler.ingest.errors import MalformedPayload
from scheduler.ingest.hunks import MAX_HUNKS, MAX_SYMBOL, Hunk
from scheduler.models import FileStatus

SHA = "a" * 40
PARENT = "b" * 40


def event(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"repository": "acme/app", "commit": SHA}
    payload.update(changes)
    return payload


HUNK: dict[str, Any] = {
    "old_start": 3,
    "old_lines": 1,
    "new_start": 3,
    "new_lines": 2,
    "symbol": "windowed",
}


def with_hunks(hunks: object) -> dict[str, Any]:
    return event(changed_files=[{"path": "src/a.py", "hunks": hunks}])


def test_the_smallest_event_is_a_repository_and_a_commit() -> None:
    commit = generic.parse_commit(event())
    assert commit == generic.CommitEvent(
        repository="acme/app", sha=SHA, branch=None, parents=(), files=()
    )
    assert commit.parent_sha is None


def test_every_field() -> None:
    commit = generic.parse_commit(
        event(
            repository="group/sub/app",
            commit=SHA.upper(),
            branch="refs/heads/main",
            parents=[PARENT, "c" * 64],
            changed_files=[
                {"path": "./src\\a.py", "status": "modified", "additions": 3, "deletions": 1},
                {"path": "src/new.py", "status": "renamed", "old_path": "src/old.py"},
                {"path": "README.md"},
            ],
            message="Fix the reader",
            author="Ada",
            time="2024-05-01T14:00:00+02:00",
            delivery_id=" build-42 ",
        )
    )
    assert commit.repository == "group/sub/app"
    assert commit.sha == SHA
    assert commit.branch == "main"
    assert commit.parents == (PARENT, "c" * 64)
    assert commit.parent_sha == PARENT
    assert commit.files == (
        generic.ChangedPath("src/a.py", FileStatus.MODIFIED, None, 3, 1),
        generic.ChangedPath("src/new.py", FileStatus.RENAMED, "src/old.py"),
        generic.ChangedPath("README.md", FileStatus.MODIFIED),
    )
    assert (commit.message, commit.author) == ("Fix the reader", "Ada")
    assert commit.time == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert commit.delivery_id == "build-42"


def test_hunks_are_optional_per_file() -> None:
    commit = generic.parse_commit(
        event(
            changed_files=[
                {"path": "src/a.py", "hunks": [HUNK, {**HUNK, "symbol": None}]},
                {"path": "src/b.py", "hunks": [{**HUNK, "old_lines": 0, "symbol": "Foo.bar"}]},
                {"path": "src/c.py", "hunks": []},
                {"path": "src/d.py"},
                {"path": "src/e.py", "hunks": [HUNK] * MAX_HUNKS},
            ]
        )
    )
    assert [change.hunks for change in commit.files] == [
        (Hunk(3, 1, 3, 2, "windowed"), Hunk(3, 1, 3, 2)),
        (Hunk(3, 0, 3, 2, "Foo.bar"),),
        (),
        None,
        (Hunk(3, 1, 3, 2, "windowed"),) * MAX_HUNKS,
    ]


def test_a_time_without_zone_is_utc() -> None:
    commit = generic.parse_commit(event(time="2024-05-01T12:00:00"))
    assert commit.time == datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "repository: Field required; commit: Field required"),
        ({"commit": SHA}, "repository: Field required"),
        (event(commit=None), "commit: Input should be a valid string"),
        ({"repository": "acme/app"}, "commit: Field required"),
        (event(repository="app"), "repository: 'app' is not OWNER/NAME"),
        (event(repository="acme//app"), "is not OWNER/NAME"),
        (
            event(commit="abc123"),
            "commit: 'abc123' is not a commit id (6 hex digits): give the full 40 (or 64) hex "
            "digits, as `git rev-parse HEAD` prints them",
        ),
        (event(commit="g" * 40), "is not a commit id"),
        (event(parents=[PARENT, "xyz"]), "parents[1]: 'xyz' is not a commit id"),
        (event(parents=PARENT), "parents: Input should be a valid list"),
        (
            event(changed_files=[{"path": "a.py", "status": "changed"}]),
            "changed_files[0].status: Input should be 'added', 'modified', 'removed', "
            "'renamed' or 'copied'",
        ),
        (event(changed_files=[{"status": "added"}]), "changed_files[0].path: Field required"),
        (event(changed_files=[{"path": "./"}]), "changed_files[0].path: a path must not be empty"),
        (event(changed_files=[{"path": "a.py"}, {"path": "./a.py"}]), "'a.py' is listed twice"),
        (
            event(changed_files=[{"path": "a.py", "additions": 1}]),
            "changed_files[0]: give both additions and deletions, or neither",
        ),
        (
            event(changed_files=[{"path": "a.py", "additions": -1, "deletions": 0}]),
            "changed_files[0].additions: Input should be greater than or equal to 0",
        ),
        (event(changed_files={"path": "a.py"}), "changed_files: Input should be a valid list"),
        (event(parent=[PARENT]), "parent: unknown field"),
        (event(changed_files=[{"path": "a.py", "stat": "added"}]), "[0].stat: unknown field"),
        (event(branch=""), "branch: String should have at least 1 character"),
        (event(time="yesterday"), "time: Input should be a valid datetime"),
        (event(delivery_id="x" * 201), "delivery_id: String should have at most 200"),
        (
            with_hunks([{**HUNK, "old_start": -1}]),
            "changed_files[0].hunks[0].old_start: Input should be greater than or equal to 0",
        ),
        (
            with_hunks([HUNK, {**HUNK, "new_lines": "3"}]),
            "changed_files[0].hunks[1].new_lines: Input should be a valid integer",
        ),
        (
            with_hunks([{**HUNK, "new_start": 1.5}]),
            "changed_files[0].hunks[0].new_start: Input should be a valid integer",
        ),
        (
            with_hunks([{key: value for key, value in HUNK.items() if key != "old_lines"}]),
            "changed_files[0].hunks[0].old_lines: Field required",
        ),
        (
            with_hunks([{**HUNK, "symbol": 7}]),
            "changed_files[0].hunks[0].symbol: Input should be a valid string",
        ),
        (
            with_hunks([{**HUNK, "symbol": "x" * (MAX_SYMBOL + 1)}]),
            "changed_files[0].hunks[0].symbol: String should have at most 200 characters",
        ),
        (
            with_hunks([{**HUNK, "symbol": ""}]),
            "changed_files[0].hunks[0].symbol: String should have at least 1 character",
        ),
        (
            with_hunks([HUNK] * (MAX_HUNKS + 1)),
            "changed_files[0].hunks: List should have at most 100 items after validation, not 101",
        ),
        (with_hunks([{**HUNK, "name": "f"}]), "changed_files[0].hunks[0].name: unknown field"),
        (with_hunks(HUNK), "changed_files[0].hunks: Input should be a valid list"),
    ],
)
def test_bad_events_are_refused_saying_what_is_wrong(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedPayload) as refused:
        generic.parse_commit(payload)
    assert message in refused.value.message


def test_repository_name_is_read_on_its_own() -> None:
    assert generic.repository_name({"repository": " /acme/app/ "}) == "acme/app"
    with pytest.raises(MalformedPayload, match="repository: a string OWNER/NAME is required"):
        generic.repository_name({"commit": SHA})
    with pytest.raises(MalformedPayload, match="is not OWNER/NAME"):
        generic.repository_name({"repository": "app"})


def test_delivery_id_is_the_header_then_the_body_then_a_hash() -> None:
    body = b'{"repository": "acme/app"}'
    declared = generic.parse_commit(event(delivery_id="from-body"))
    anonymous = generic.parse_commit(event())
    assert generic.delivery_id(header="h-1", commit=declared, body=body) == "h-1"
    assert generic.delivery_id(header=" ", commit=declared, body=body) == "from-body"
    assert generic.delivery_id(header=None, commit=anonymous, body=body) == (
        "sha256:" + hashlib.sha256(body).hexdigest()
    )
    with pytest.raises(MalformedPayload, match="at most 200 characters"):
        generic.delivery_id(header="x" * 201, commit=anonymous, body=body)
