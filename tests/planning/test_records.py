"""The records a plan keeps as bytes: what goes in comes back out, and
bytes of another kind or version are refused with a clear error."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from scheduler.planning.records import (
    NOT_COLLECTED,
    DecisionRecord,
    Payload,
    RecordError,
    failed_runs_ago,
)

# Names a runner may produce: quotes, backslashes, a key-like text, non-ASCII.
NAMES = [
    "tests/test_io.py::test_read",
    'tests/test_q.py::test_quote["a,b"]',
    "tests/test_w.py::test_path[C:\\temp]",
    'tests/test_k.py::test_key[,"probability":1]',
    "tests/test_u.py::test_ünïcode[日本]",
]


def payload(**overrides: object) -> Payload:
    arguments: dict[str, object] = {
        "test_id": [11, 12, 13, 14, 15],
        "names": NAMES,
        "probability": np.array([0.5, 0.25, 0.125, 1 / 3, 0.0]),
        "reasons": ["Failed in its last run", None, 'It says "hi"\nthen', "Rare", None],
        "own_file_changed": np.array([True, False, False, True, False]),
        "duration": np.array([1.5, math.nan, 0.25, 3.0, 0.0]),
        "builds_since_failure": np.array([0.0, math.nan, 4.0, 1.0, math.nan]),
        "runs": np.array([10, 0, 3, math.nan, 1]),
        "recent": ["FPP", "", "PPE", "PFE", "P"],
    }
    arguments.update(overrides)
    made = Payload.build(**arguments)  # type: ignore[arg-type]
    assert len(made) == len(arguments["names"])  # type: ignore[arg-type]
    return made


def objects(made: Payload) -> list[dict[str, object]]:
    """Each test's object as the answer would hold it, with rank 1 and a reason."""
    return [
        json.loads(f'{head[1:]}1,"reason":"{reason or "none" + chr(34)},"rule":"model"}}')
        for head, reason in zip(made.head, made.reason, strict=True)
    ]


def test_a_payload_comes_back_as_it_went_in() -> None:
    made = payload()
    back = Payload.decode(made.encode())
    assert back.names == NAMES
    assert back.position[NAMES[3]] == 3
    assert back.reasons == ["Failed in its last run", None, 'It says "hi"\nthen', "Rare", None]
    assert back.test_id.tolist() == [11, 12, 13, 14, 15]
    assert back.own_file_changed.tolist() == [True, False, False, True, False]
    assert back.runs.tolist() == [10, 0, 3, 0, 1]
    assert back.failed_runs_ago.tolist() == [0, -1, 2, 1, -1]
    np.testing.assert_array_equal(back.duration, made.duration)
    np.testing.assert_array_equal(back.builds_since_failure, made.builds_since_failure)
    assert back.head == made.head
    assert back.reason == made.reason
    parsed = objects(back)
    assert [test["test"] for test in parsed] == NAMES
    assert [test["probability"] for test in parsed] == [0.5, 0.25, 0.125, 1 / 3, 0.0]
    assert [test["duration"] for test in parsed] == [1.5, None, 0.25, 3.0, 0.0]
    assert parsed[2]["reason"] == 'It says "hi"\nthen'


def test_heads_with_other_durations_keep_the_rest() -> None:
    made = payload()
    heads = made.heads_with(np.array([2.0, 1.0, math.nan, 3.0, 0.5]))
    parsed = [json.loads(f"{head[1:]}1}}") for head in heads.tolist()]
    assert [test["duration"] for test in parsed] == [2.0, 1.0, None, 3.0, 0.5]
    assert [test["test"] for test in parsed] == NAMES


def test_an_empty_payload_and_one_without_texts() -> None:
    empty = payload(
        test_id=[],
        names=[],
        probability=np.zeros(0),
        reasons=[],
        own_file_changed=np.zeros(0, bool),
        duration=np.zeros(0),
        builds_since_failure=np.zeros(0),
        runs=np.zeros(0),
        recent=[],
    )
    back = Payload.decode(empty.encode())
    assert (len(back), back.names, back.reasons) == (0, [], [])
    numbers_only = payload(texts=False)
    assert numbers_only.names == NAMES  # what deciding needs
    with pytest.raises(RecordError, match="without its texts"):
        numbers_only.encode()


def test_a_decision_comes_back_with_what_was_not_collected() -> None:
    record = DecisionRecord.of(
        5,
        rows=np.array([3, -1, 0, 2]),  # the second candidate is new: not in the plan
        selected=np.array([True, True, False, True]),
        propensity=np.array([1.0, 1.0, 0.05, 0.05]),
        rules=["model", "new", "budget", "exploration"],
        ranks=np.array([1, 2, 4, 3]),
    )
    back = DecisionRecord.decode(record.encode())
    assert [back.selected_at(row) for row in range(5)] == [False, None, True, True, None]
    assert [back.propensity_at(row) for row in range(5)] == [0.05, None, 0.05, 1.0, None]
    assert back.rule == ["budget", None, "exploration", "model", None]
    assert back.rank.tolist() == [4, 0, 3, 1, 0]
    assert int(back.selected[1]) == NOT_COLLECTED


def test_other_bytes_are_refused() -> None:
    with pytest.raises(RecordError, match="not a RRPAYLD record"):
        Payload.decode(b"something else entirely")
    decision = DecisionRecord.of(
        1,
        rows=np.array([0]),
        selected=np.array([True]),
        propensity=np.array([1.0]),
        rules=["model"],
        ranks=np.array([1]),
    ).encode()
    with pytest.raises(RecordError, match="not a RRPAYLD record"):
        Payload.decode(decision)
    newer = decision.replace(b'"version": 1', b'"version": 9')
    with pytest.raises(RecordError, match="record version 9, this riskrank reads 1"):
        DecisionRecord.decode(newer)


def test_newest_failure_or_error() -> None:
    assert failed_runs_ago(["", "P", "F", "PE", "PPFE", "PPEF", "EEE"]).tolist() == [
        -1,
        -1,
        0,
        1,
        2,
        2,
        0,
    ]


def test_groups_are_the_id_prefixes_before_each_separator() -> None:
    payload = Payload.build(
        test_id=np.arange(4),
        names=["a.py::T::test_x", "b.py::test_y", "a.py::T::test_z", "a.py::test_w"],
        probability=np.zeros(4),
        own_file_changed=np.zeros(4, dtype=bool),
        duration=np.zeros(4),
        builds_since_failure=np.zeros(4),
        runs=np.zeros(4, dtype=np.int64),
        recent=[""] * 4,
        reasons=[None] * 4,
    )
    assert payload.groups == {"a.py": [0, 2, 3], "a.py::T": [0, 2], "b.py": [1]}
