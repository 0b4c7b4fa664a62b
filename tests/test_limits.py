"""scheduler.limits on its own: each limit holds at its value and refuses
one past it, counted as the database counts (characters or UTF-8 bytes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from scheduler import limits
from scheduler.ingest.errors import Unstorable


def test_characters_and_bytes_are_counted_apart() -> None:
    # 255 two-byte characters fit a String(255): PostgreSQL counts characters.
    assert limits.text("å" * 255, "author", max_chars=255) == "å" * 255
    with pytest.raises(Unstorable, match=r"^author: must be at most 255 characters \(it has 256\)"):
        limits.text("å" * 256, "author", max_chars=255)
    # 683 three-byte characters are 2,049 bytes: past an index's 2,048.
    assert limits.text("中" * 682, "test", max_bytes=2048)
    with pytest.raises(Unstorable, match=r"^test: must be at most 2048 bytes in UTF-8"):
        limits.text("中" * 683, "test", max_bytes=2048)


@pytest.mark.parametrize(
    ("value", "problem"),
    [("a\0b", "a NUL character"), ("a\ud800b", "a lone surrogate")],
)
def test_what_no_text_column_holds(value: str, problem: str) -> None:
    with pytest.raises(Unstorable, match=f"^branch: must not contain {problem}$"):
        limits.text(value, "branch")


def test_integers_in_range() -> None:
    assert limits.integer(limits.INT32_MAX, "additions") == limits.INT32_MAX
    with pytest.raises(Unstorable, match=r"^additions: must be between 0 and 2147483647$"):
        limits.integer(limits.INT32_MAX + 1, "additions")


def test_times_with_no_utc_equivalent() -> None:
    east = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=5)))
    assert limits.time(east, "time") == datetime(9999, 12, 31, 18, tzinfo=UTC)
    west = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))
    with pytest.raises(Unstorable, match=r"^time: 9999-12-31T23:00:00-05:00 is out of range$"):
        limits.time(west, "time")
    with pytest.raises(Unstorable, match=r"^time: must say its time zone$"):
        limits.time(datetime(2024, 1, 1), "time")  # noqa: DTZ001 (the case under test)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"a": [{"b": "x\0"}]}, "body.a[0].b: must not contain a NUL character"),
        ({"a\0": 1}, "body key: must not contain a NUL character"),
        ({"a": [1.0, float("inf")]}, "body.a[1]: must be a finite number"),
        ({"a": [[]] * 2 + [[[]]]}, None),
    ],
)
def test_json_documents(document: object, message: str | None) -> None:
    if message is None:
        limits.json_document(document)
        return
    with pytest.raises(Unstorable) as refused:
        limits.json_document(document)
    assert refused.value.message == message
    assert refused.value.status_code == 422


def test_json_depth_is_bounded() -> None:
    fits: object = []
    for _ in range(limits.JSON_DEPTH - 1):
        fits = [fits]
    limits.json_document(fits)  # JSON_DEPTH levels, the outermost counted
    with pytest.raises(Unstorable, match=f"nested more than {limits.JSON_DEPTH} levels deep"):
        limits.json_document([fits])


def test_lists_hold_their_bound_and_refuse_one_past_it() -> None:
    limits.count(["t"] * limits.PLAN_TESTS, "tests", limits.PLAN_TESTS)
    with pytest.raises(
        Unstorable, match=r"^tests: must have at most 200000 items \(it has 200001\)"
    ):
        limits.count(["t"] * (limits.PLAN_TESTS + 1), "tests", limits.PLAN_TESTS)


def test_the_models_read_the_same_list_bounds() -> None:
    """One bound per list field: the pydantic models (and so the OpenAPI
    document) declare the numbers the API's checks refuse past."""
    from scheduler.api.plans import PlanBody
    from scheduler.ingest import generic
    from scheduler.ingest.json_results import RunIn

    def max_items(schema: dict[str, object], field: str) -> object:
        value = schema["properties"][field]  # type: ignore[index]
        for option in value.get("anyOf", [value]):
            if option.get("type") == "array":
                return option.get("maxItems")
        return None

    assert max_items(PlanBody.model_json_schema(), "tests") == limits.PLAN_TESTS
    assert max_items(RunIn.model_json_schema(), "results") == limits.RESULTS
    commit = generic.body_json_schema(ref_template="#/$defs/{model}")
    assert max_items(commit, "changed_files") == limits.COMMIT_FILES
    assert max_items(commit, "parents") == limits.PARENTS
    assert max_items(commit["$defs"]["_ChangedFileIn"], "hunks") == limits.HUNKS


@pytest.mark.parametrize(
    ("kinds", "bound"),
    [
        (["string_too_long"], True),
        (["too_long", "less_than_equal", limits.UNSTORABLE_ERROR], True),
        (["string_too_long", "int_parsing"], False),  # the form first: 400
        (["missing"], False),
        ([], False),
    ],
)
def test_which_pydantic_errors_are_bounds(kinds: list[str], bound: bool) -> None:
    assert limits.past_bounds(kinds) is bound
