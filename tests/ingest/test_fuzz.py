"""Fuzzing the parsers of what anyone may send: the JUnit reader, the results
JSON, and the GitHub, GitLab and generic payloads, each from raw bytes
through to what a worker would store. Whatever the input, a parser either
reads it or raises the project's own documented refusal (IngestError: 400,
413 or 422 with a message); never anything else, which the API would answer
with a 500.

The budget of examples is fixed and the runs derandomized, so CI spends the
same few seconds on the same inputs every time; the strategies are built
around the real shapes (a push with commits, a report with testcases) so
that most examples get past the first check and reach the deep code."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from scheduler import limits
from scheduler.ingest import generic, github, gitlab
from scheduler.ingest.errors import IngestError, MalformedPayload, Unstorable
from scheduler.ingest.json_results import case_results, parse_run_json
from scheduler.ingest.junit import parse_junit
from scheduler.ingest.payload import decode_json_body
from scheduler.ingest.results import CaseResult, storable_results

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# --- values -----------------------------------------------------------------------

# Any character, lone surrogates and NULs included (hypothesis leaves
# surrogates out unless asked).
ANY_CHAR = st.characters(exclude_categories=())
TEXT = st.text(ANY_CHAR, max_size=12) | st.sampled_from(["", " ", "\x00", "\ud800", "x" * 300])
SHA = st.sampled_from(["a" * 40, "0" * 40, "b" * 64, "c" * 65, "ABC", "g" * 40, ""])
SCALAR = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT
JSON = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=12,
)
ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=14)), timezone(-timedelta(0))]
)
TIME = (
    st.datetimes(timezones=st.none() | ZONES).map(datetime.isoformat)
    | st.sampled_from(["9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00", "yesterday"])
    | TEXT
)


def either(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A plausible value most of the time, anything JSON now and then."""
    return st.one_of(good, good, good, JSON)


PATHS = either(st.lists(either(TEXT | st.sampled_from(["src/a.py", "a\\b.py"])), max_size=3))
COMMIT = st.fixed_dictionaries(
    {},
    optional={
        "id": either(SHA),
        "message": either(TEXT),
        "timestamp": either(TIME),
        "author": either(st.fixed_dictionaries({}, optional={"name": either(TEXT)})),
        "added": PATHS,
        "modified": PATHS,
        "removed": PATHS,
    },
)
REF = either(
    st.sampled_from(["refs/heads/main", "refs/tags/v1", "main"]) | TEXT.map("refs/heads/".__add__)
)
GITHUB_PUSH = st.fixed_dictionaries(
    {
        "repository": either(
            st.fixed_dictionaries({"full_name": either(st.just("acme/app") | TEXT)})
        )
    },
    optional={
        "ref": REF,
        "before": either(SHA),
        "after": either(SHA),
        "created": either(st.booleans()),
        "deleted": either(st.booleans()),
        "forced": either(st.booleans()),
        "commits": either(st.lists(either(COMMIT), max_size=3)),
        "head_commit": either(COMMIT),
    },
)
GITLAB_PUSH = st.fixed_dictionaries(
    {
        "project": either(
            st.fixed_dictionaries(
                {"path_with_namespace": either(st.just("group/app") | TEXT)},
                optional={"default_branch": either(TEXT)},
            )
        )
    },
    optional={
        "object_kind": either(st.just("push") | TEXT),
        "ref": REF,
        "before": either(SHA),
        "after": either(SHA),
        "checkout_sha": either(SHA),
        "total_commits_count": either(st.integers()),
        "commits": either(st.lists(either(COMMIT), max_size=3)),
    },
)
HUNK = st.fixed_dictionaries(
    {
        "old_start": either(st.integers()),
        "old_lines": either(st.integers(min_value=0)),
        "new_start": either(st.integers(min_value=0)),
        "new_lines": either(st.integers(min_value=0)),
    },
    optional={"symbol": either(TEXT)},
)
CHANGED_FILE = st.fixed_dictionaries(
    {"path": either(TEXT | st.just("src/a.py"))},
    optional={
        "status": either(st.sampled_from(["added", "modified", "removed", "renamed", "x"])),
        "old_path": either(TEXT),
        "additions": either(st.integers()),
        "deletions": either(st.integers()),
        "hunks": either(st.lists(either(HUNK), max_size=2)),
    },
)
GENERIC_COMMIT = st.fixed_dictionaries(
    {"repository": either(st.just("acme/gen") | TEXT), "commit": either(SHA)},
    optional={
        "branch": either(TEXT),
        "parents": either(st.lists(either(SHA), max_size=2)),
        "changed_files": either(st.lists(either(CHANGED_FILE), max_size=3)),
        "message": either(TEXT),
        "author": either(TEXT),
        "time": either(TIME),
        "delivery_id": either(TEXT),
        "extra": JSON,
    },
)
RESULT = st.fixed_dictionaries(
    {"test": either(TEXT | st.just("tests/a.py::t")), "outcome": either(st.just("passed") | TEXT)},
    optional={
        "duration": either(st.floats(allow_nan=False) | st.integers()),
        "attempt": either(st.integers()),
        "file": either(TEXT),
        "message": either(TEXT),
    },
)
RUN = st.fixed_dictionaries(
    {"results": either(st.lists(either(RESULT), max_size=3))},
    optional={
        "commit": either(SHA),
        "branch": either(TEXT),
        "run_key": either(TEXT),
        "plan_id": either(st.integers()),
        "source": either(st.sampled_from(["json", "pytest", "junit"])),
    },
)


def encoded(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """A document as a sender writes it (surrogates as `\\ud800` escapes,
    which JSON allows and no database holds), now and then cut short, or
    nested in arrays, or raw bytes."""
    text = documents.map(lambda document: json.dumps(document).encode())
    return st.one_of(
        text,
        text,
        text,
        st.tuples(text, st.integers(min_value=0, max_value=40)).map(
            lambda t: t[0][: -t[1] or None]
        ),
        st.tuples(text, st.integers(min_value=1, max_value=300)).map(
            lambda t: b"[" * t[1] + t[0] + b"]" * t[1]
        ),
        st.binary(max_size=64),
    )


def refused_or_read(parse: Callable[[], Any]) -> Any:
    """What `parse` returns, or None if it refused with the documented
    error type (anything else fails the test)."""
    try:
        return parse()
    except IngestError as error:
        refusal = error
    assert refusal.message, "a refusal says why"
    assert 400 <= refusal.status_code < 500
    return None


# --- providers ------------------------------------------------------------------


def github_pipeline(body: bytes, content_type: str | None = None) -> github.Push:
    """What receive_github reads of a body, in its order."""
    payload = decode_json_body(body, content_type)
    github.repository_full_name(payload)
    return github.parse_push(payload)


@FUZZ
@given(encoded(GITHUB_PUSH))
@example(
    json.dumps(
        {
            "repository": {"full_name": "a/b"},
            "ref": "refs/heads/m",
            "after": "a" * 40,
            "head_commit": {"id": []},
        }
    ).encode()
)
def test_github_push_is_read_or_refused(body: bytes) -> None:
    push = refused_or_read(lambda: github_pipeline(body))
    if push is not None:
        for commit in push.commits:
            assert len(commit.sha) <= limits.SHA_CHARS
            limits.optional_text(commit.message, "message")


@FUZZ
@given(GITHUB_PUSH)
def test_github_form_body_is_read_or_refused(document: dict[str, Any]) -> None:
    body = b"payload=" + quote(json.dumps(document)).encode()
    refused_or_read(lambda: github_pipeline(body, "application/x-www-form-urlencoded"))


def gitlab_pipeline(body: bytes) -> github.Push | None:
    payload = decode_json_body(body, None)
    if gitlab.project_path(payload) is None:
        return None
    gitlab.default_branch(payload)
    gitlab.delivery_id(idempotency_key=None, event_uuid=None, body=body)
    return gitlab.parse_push(payload)


@FUZZ
@given(encoded(GITLAB_PUSH))
def test_gitlab_push_is_read_or_refused(body: bytes) -> None:
    push = refused_or_read(lambda: gitlab_pipeline(body))
    if push is not None:
        for commit in push.commits:
            assert len(commit.sha) <= limits.SHA_CHARS


@FUZZ
@given(TEXT, TEXT)
def test_gitlab_delivery_headers_are_read_or_refused(key: str, uuid: str) -> None:
    refused_or_read(lambda: gitlab.delivery_id(idempotency_key=key, event_uuid=uuid, body=b"{}"))


def generic_pipeline(body: bytes, header: str | None) -> generic.CommitEvent:
    payload = decode_json_body(body, None)
    generic.repository_name(payload)
    commit = generic.parse_commit(payload)
    generic.delivery_id(header=header, commit=commit, body=body)
    return commit


@FUZZ
@given(encoded(GENERIC_COMMIT), st.none() | TEXT)
def test_generic_commit_is_read_or_refused(body: bytes, header: str | None) -> None:
    commit = refused_or_read(lambda: generic_pipeline(body, header))
    if commit is not None:
        assert commit.time is None or commit.time.tzinfo is UTC
        for change in commit.files:
            for number in (change.additions, change.deletions):
                assert number is None or 0 <= number <= limits.INT32_MAX


# --- reports --------------------------------------------------------------------


def run_pipeline(body: bytes) -> list[CaseResult]:
    """What receive_run reads of results JSON."""
    run = parse_run_json(body)
    return list(storable_results(case_results(run.results), "results"))


@FUZZ
@given(encoded(RUN))
@example(b'{"results": [{"test": "   ", "outcome": "passed"}]}')
def test_results_json_is_read_or_refused(body: bytes) -> None:
    results = refused_or_read(lambda: run_pipeline(body))
    for result in results or ():
        assert result.test
        assert len(result.test.encode()) <= limits.TEST_ID_BYTES


ATTRIBUTE_VALUES = either(
    st.sampled_from(["", " ", "1.5", "1,234.5", "0,5", "12ms", "-1", "inf", "nan", "1e999"])
    | st.sampled_from(["tests/a.py", "a.b.C", "notrun", "failed", "chromium", "x" * 3000])
)
ATTRIBUTES = st.dictionaries(
    st.sampled_from(
        ["name", "classname", "file", "time", "status", "result", "message", "hostname"]
    ),
    ATTRIBUTE_VALUES.filter(lambda value: isinstance(value, str)) | TEXT,
    max_size=5,
)
TAGS = st.sampled_from(
    [
        "testsuites",
        "testsuite",
        "testcase",
        "failure",
        "error",
        "skipped",
        "rerunFailure",
        "flakyFailure",
        "flakyError",
        "rerun",
        "stackTrace",
        "system-out",
        "properties",
        "x:y",
    ]
)


def _xml_text(value: str) -> str:
    # XML 1.0 cannot hold most control characters nor surrogates: what a
    # serializer would not write is left for the raw-bytes examples.
    return "".join(
        c for c in value if c in "\t\n\r" or (c >= " " and not "\ud800" <= c <= "\udfff")
    )


def _attrs(attributes: dict[str, Any]) -> str:
    return "".join(
        f" {name}={quoteattr(_xml_text(str(value)))}" for name, value in attributes.items()
    )


ELEMENT = st.recursive(
    st.builds(lambda text: escape(_xml_text(text)), TEXT),
    lambda inner: st.builds(
        lambda tag, attributes, children: f"<{tag}{_attrs(attributes)}>{''.join(children)}</{tag}>",
        TAGS,
        ATTRIBUTES,
        st.lists(inner, max_size=3),
    ),
    max_leaves=10,
)
REPORT = st.builds(
    lambda root, attributes, children: (
        f"<{root}{_attrs(attributes)}>{''.join(children)}</{root}>".encode()
    ),
    st.sampled_from(["testsuites", "testsuite", "testcase", "html", "results"]),
    ATTRIBUTES,
    st.lists(ELEMENT, max_size=4),
)


def junit_pipeline(data: bytes) -> list[CaseResult]:
    return list(storable_results(parse_junit(data, max_bytes=64 * 1024), "testcase"))


@FUZZ
@given(
    st.one_of(
        REPORT,
        REPORT,
        REPORT.map(gzip.compress),
        st.tuples(REPORT, st.integers(min_value=1, max_value=60)).map(lambda t: t[0][: -t[1]]),
        st.tuples(REPORT, st.binary(min_size=1, max_size=8), st.integers(min_value=0)).map(
            lambda t: t[0][: t[2] % (len(t[0]) + 1)] + t[1] + t[0][t[2] % (len(t[0]) + 1) :]
        ),
        REPORT.map(lambda r: b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]>' + r),
        st.binary(max_size=200),
        st.binary(max_size=40).map(lambda b: b"\x1f\x8b" + b),
    )
)
@example(b'<testsuite><testcase name="a&#0;b"/></testsuite>')
@example(b'<testsuite><testcase name="&#xD800;"/></testsuite>')
def test_junit_report_is_read_or_refused(data: bytes) -> None:
    results = refused_or_read(lambda: junit_pipeline(data))
    for result in results or ():
        assert result.test
        assert result.attempt >= 1
        assert result.duration is None or result.duration >= 0


def test_refusals_are_the_documented_types() -> None:
    """What the fuzzers accept as a refusal is the API's 4xx: MalformedPayload
    400 and Unstorable 422 (scheduler.errors)."""
    assert MalformedPayload("x").status_code == 400
    assert Unstorable("x").status_code == 422
    with pytest.raises(Unstorable, match="nested more than 64"):
        decode_json_body(b"[" * 1000 + b"]" * 1000, None)
    with pytest.raises(Unstorable, match=r"body\.a: must not contain a lone surrogate"):
        decode_json_body(b'{"a": "\\ud800"}', None)
