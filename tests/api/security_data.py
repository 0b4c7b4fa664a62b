"""Deliveries and reports the security tests send: small, valid bodies for
each endpoint, built here so that the tests need no shared samples."""

from __future__ import annotations

import json
import uuid

from scheduler.ingest.payload import sign_hmac_sha256

SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
BEFORE = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"

_COMMIT = {
    "id": SHA,
    "message": "Fix the reader",
    "timestamp": "2024-05-01T12:00:00Z",
    "author": {"name": "Ada"},
    "added": [],
    "modified": ["src/reader.py"],
    "removed": [],
}


def github_push(full_name: str) -> bytes:
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "before": BEFORE,
            "after": SHA,
            "repository": {"full_name": full_name, "default_branch": "main"},
            "commits": [_COMMIT],
            "head_commit": _COMMIT,
        }
    ).encode()


def gitlab_push(path: str) -> bytes:
    return json.dumps(
        {
            "object_kind": "push",
            "ref": "refs/heads/main",
            "before": BEFORE,
            "after": SHA,
            "checkout_sha": SHA,
            "project": {"path_with_namespace": path, "default_branch": "main"},
            "total_commits_count": 1,
            "commits": [_COMMIT],
        }
    ).encode()


def generic_commit(name: str) -> bytes:
    return json.dumps({"repository": name, "commit": SHA, "branch": "main"}).encode()


def webhook(provider: str, name: str, secret: str) -> tuple[str, bytes, dict[str, str]]:
    """URL, body and headers of a push to `name`, signed (GitLab: carrying
    the token) with `secret`."""
    if provider == "github":
        body = github_push(name)
        headers = {
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign_hmac_sha256(secret, body),
            "Content-Type": "application/json",
        }
    elif provider == "gitlab":
        body = gitlab_push(name)
        headers = {
            "X-Gitlab-Event": "Push Hook",
            "X-Gitlab-Token": secret,
            "Idempotency-Key": str(uuid.uuid4()),
            "Content-Type": "application/json",
        }
    else:
        body = generic_commit(name)
        headers = {
            "X-Riskrank-Signature-256": sign_hmac_sha256(secret, body),
            "Content-Type": "application/json",
        }
    return f"/webhooks/{provider}", body, headers


RESULTS = json.dumps(
    {
        "commit": SHA,
        "results": [{"test": "tests/test_io.py::test_open", "outcome": "passed", "duration": 0.1}],
    }
).encode()
