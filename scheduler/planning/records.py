"""The two records a plan keeps as bytes on its row: its payload and its decision.

- The **payload** is written by the worker when it scores a commit: every
  scored test in rank order with what serving the plan reads (test id,
  probability, own-file flag, the statistics the scores came from) and the
  pieces of its JSON object in the API's answer that no policy changes (the
  test's name, its probability, its scored reason), escaped once. Serving a
  plan reads one row and joins text, where reading ten thousand item rows
  and encoding them was most of a build's first plan request
  (benchmarks/plan_api.py).
- The **decision** is what the policy last applied to the plan decided for
  each of its tests, in the payload's order: selected or not (or not
  collected), the logged selection probability, the rule, and the test's
  rank in the order CI ran. The plan API writes it in one row after its
  answer; plan evaluation and `riskrank plan-log show` read it.

Both are plain, versioned, self-describing binary: a magic, a JSON header
naming each column's dtype and offset, then the columns (little-endian
numpy arrays, and ASCII text columns as lines). Nothing here touches the
database."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from json.encoder import encode_basestring_ascii
from typing import Any

import numpy as np
import numpy.typing as npt

PAYLOAD_MAGIC = b"RRPAYLD"
DECISION_MAGIC = b"RRDECSN"
VERSION = 1


class RecordError(ValueError):
    """Bytes that are not a record of this kind and version."""


def _frame(
    magic: bytes, header: dict[str, Any], arrays: dict[str, np.ndarray], texts: dict[str, list[str]]
) -> bytes:
    """magic, u32 header length, header JSON, then the columns back to back."""
    parts: list[bytes] = []
    offset = 0
    layout: dict[str, list[Any]] = {}
    for name, array in arrays.items():
        data = np.ascontiguousarray(array).tobytes()
        layout[name] = ["a", array.dtype.str, offset, len(array)]
        parts.append(data)
        offset += len(data)
    for name, lines in texts.items():
        data = "\n".join(lines).encode("ascii")
        layout[name] = ["t", "ascii", offset, len(data)]
        parts.append(data)
        offset += len(data)
    head = json.dumps({**header, "version": VERSION, "columns": layout}).encode()
    return b"".join([magic, len(head).to_bytes(4, "little"), head, *parts])


@dataclass(frozen=True)
class _Unframed:
    header: dict[str, Any]
    data: memoryview

    def array(self, name: str) -> np.ndarray:
        kind, dtype, offset, count = self.header["columns"][name]
        if kind != "a":
            raise RecordError(f"column {name} is not an array")
        return np.frombuffer(self.data, dtype=np.dtype(dtype), count=count, offset=offset)

    def lines(self, name: str, n: int) -> list[str]:
        kind, _, offset, length = self.header["columns"][name]
        if kind != "t":
            raise RecordError(f"column {name} is not text")
        if n == 0:
            return []
        lines = bytes(self.data[offset : offset + length]).decode("ascii").split("\n")
        if len(lines) != n:
            raise RecordError(f"column {name} has {len(lines)} lines, not {n}")
        return lines


def _unframe(magic: bytes, blob: bytes) -> _Unframed:
    view = memoryview(blob)
    if bytes(view[: len(magic)]) != magic:
        raise RecordError(f"not a {magic.decode()} record")
    start = len(magic) + 4
    length = int.from_bytes(view[len(magic) : start], "little")
    header = json.loads(bytes(view[start : start + length]))
    if header.get("version") != VERSION:
        raise RecordError(
            f"record version {header.get('version')!r}, this riskrank reads {VERSION}"
        )
    return _Unframed(header, view[start + length :])


def _objects(values: Sequence[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def json_number(value: float | None) -> str:
    """A finite float (or None) as JSON."""
    return "null" if value is None or math.isnan(value) else repr(float(value))


# --- the payload -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Payload:
    """A scored plan's tests in rank order (row r has rank r + 1).

    Statistics are those the scores came from, as of `stats_version` of the
    repository (see `scheduler.services.plans.items`): NaN unknown;
    `failed_runs_ago` is how many runs back the test last failed or errored
    within its recent outcomes (0: its last run), -1 for none.

    The two text columns are each test's JSON object in the answer, escaped
    (see `scheduler.services.plans.answer`): `head` is
    `,{"test":NAME,"probability":P,"duration":D,"rank":`, and `reason` the
    scored reason without its opening quote, closing quote included
    (`Failed 2 of its last 5 runs"`; "" none)."""

    test_id: npt.NDArray[np.int64]
    probability: npt.NDArray[np.float64]
    own_file_changed: npt.NDArray[np.bool_]
    duration: npt.NDArray[np.float64]
    builds_since_failure: npt.NDArray[np.float64]
    runs: npt.NDArray[np.int64]
    failed_runs_ago: npt.NDArray[np.int32]
    head: list[str]
    reason: list[str]
    # What the scorer gives a test it has never seen, on this change (None:
    # a plan stored before this was kept; the heuristic's then).
    new_test_probability: float | None = None
    # Where the scorer puts such a test: before row `new_test_rank` (None: a
    # plan stored before this was kept; placed by its probability then).
    new_test_rank: int | None = None

    def __len__(self) -> int:
        return len(self.test_id)

    @classmethod
    def build(
        cls,
        *,
        test_id: Sequence[int] | np.ndarray,
        names: Sequence[str],
        probability: np.ndarray,
        reasons: Sequence[str | None],
        own_file_changed: np.ndarray,
        duration: np.ndarray,
        builds_since_failure: np.ndarray,
        runs: np.ndarray,
        recent: Sequence[str],
        texts: bool = True,
        new_test_probability: float | None = None,
        new_test_rank: int | None = None,
    ) -> Payload:
        """From columns already in rank order. Without `texts`, a payload to
        decide on only (a backtest's): no JSON pieces, not to be encoded."""
        text = encode_basestring_ascii
        probability = np.asarray(probability, dtype=np.float64)
        duration = np.asarray(duration, dtype=np.float64)
        payload = cls(
            test_id=np.asarray(test_id, dtype=np.int64),
            probability=probability,
            own_file_changed=np.asarray(own_file_changed, dtype=bool),
            duration=duration,
            builds_since_failure=np.asarray(builds_since_failure, dtype=np.float64),
            runs=np.nan_to_num(np.asarray(runs, dtype=np.float64)).astype(np.int64),
            failed_runs_ago=failed_runs_ago(recent),
            head=heads(names, probability, duration) if texts else [],
            reason=[text(r)[1:] if r else "" for r in reasons] if texts else [],
            new_test_probability=new_test_probability,
            new_test_rank=new_test_rank,
        )
        if not texts:
            payload.__dict__["names"] = list(names)  # what `names` would decode
        return payload

    def encode(self) -> bytes:
        if len(self.head) != len(self):
            raise RecordError("a payload made without its texts is not stored")
        header: dict[str, Any] = {"n": len(self)}
        if self.new_test_probability is not None:
            header["new_test_probability"] = self.new_test_probability
        if self.new_test_rank is not None:
            header["new_test_rank"] = self.new_test_rank
        return _frame(
            PAYLOAD_MAGIC,
            header,
            {
                "test_id": self.test_id.astype("<i8"),
                "probability": self.probability.astype("<f8"),
                "own_file_changed": self.own_file_changed.astype(np.uint8),
                "duration": self.duration.astype("<f8"),
                "builds_since_failure": self.builds_since_failure.astype("<f8"),
                "runs": self.runs.astype("<i8"),
                "failed_runs_ago": self.failed_runs_ago.astype("<i4"),
            },
            {"head": self.head, "reason": self.reason},
        )

    @staticmethod
    def durations(blob: bytes) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Only the test ids and expected durations of a payload (plan
        evaluation's estimate of the time a plan saved), without its text."""
        record = _unframe(PAYLOAD_MAGIC, blob)
        return record.array("test_id"), record.array("duration")

    @classmethod
    def decode(cls, blob: bytes) -> Payload:
        record = _unframe(PAYLOAD_MAGIC, blob)
        n = int(record.header["n"])
        return cls(
            test_id=record.array("test_id"),
            probability=record.array("probability"),
            own_file_changed=record.array("own_file_changed").astype(bool),
            duration=record.array("duration"),
            builds_since_failure=record.array("builds_since_failure"),
            runs=record.array("runs"),
            failed_runs_ago=record.array("failed_runs_ago"),
            head=record.lines("head", n),
            reason=record.lines("reason", n),
            new_test_probability=record.header.get("new_test_probability"),
            new_test_rank=record.header.get("new_test_rank"),
        )

    # Derived once per payload (a payload is cached per plan in the API process).

    @cached_property
    def names(self) -> list[str]:
        if not len(self):
            return []
        start = len(HEAD_START)
        quoted = ",".join(h[start : h.index(PROBABILITY_KEY, start)] for h in self.head)
        names: list[str] = json.loads(f"[{quoted}]")
        return names

    @cached_property
    def position(self) -> dict[str, int]:
        return {name: row for row, name in enumerate(self.names)}

    @cached_property
    def groups(self) -> dict[str, list[int]]:
        """The rows of each group of tests, by the part of their ids before
        a `::` (a file, a class: `a.py` and `a.py::TestX` of
        `a.py::TestX::test_y`), in rank order."""
        groups: dict[str, list[int]] = {}
        for row, name in enumerate(self.names):
            end = name.find("::")
            while end > 0:
                groups.setdefault(name[:end], []).append(row)
                end = name.find("::", end + 2)
        return groups

    @cached_property
    def reasons(self) -> list[str | None]:
        if not len(self):
            return []
        quoted = ",".join('"' + r if r else "null" for r in self.reason)
        reasons: list[str | None] = json.loads(f"[{quoted}]")
        return reasons

    @cached_property
    def pieces(self) -> tuple[np.ndarray, np.ndarray]:
        """The text columns as object arrays (None for no scored reason)."""
        return _objects(self.head), _objects([r or None for r in self.reason])

    def heads_with(self, duration: npt.NDArray[np.float64]) -> np.ndarray:
        """The heads with other durations (the statistics read again): the
        stored ones where the duration is the same."""
        heads = self.pieces[0].copy()
        same = (duration == self.duration) | (np.isnan(duration) & np.isnan(self.duration))
        start = len(HEAD_START)
        for row, value in zip(
            np.flatnonzero(~same).tolist(), duration[~same].tolist(), strict=True
        ):
            head = self.head[row]
            cut = head[: head.index(DURATION_KEY, start)]
            heads[row] = f"{cut}{DURATION_KEY}{json_number(value)}{RANK_KEY}"
        return heads


HEAD_START = ',{"test":'
PROBABILITY_KEY = ',"probability":'
DURATION_KEY = ',"duration":'
RANK_KEY = ',"rank":'


def heads(
    names: Sequence[str], probability: npt.NDArray[np.float64], duration: npt.NDArray[np.float64]
) -> list[str]:
    """`,{"test":NAME,"probability":P,"duration":D,"rank":` for each test."""
    text = encode_basestring_ascii
    return [
        f"{HEAD_START}{text(name)}{PROBABILITY_KEY}{p!r}{DURATION_KEY}{json_number(d)}{RANK_KEY}"
        for name, p, d in zip(names, probability.tolist(), duration.tolist(), strict=True)
    ]


def failed_runs_ago(recent: Sequence[str]) -> npt.NDArray[np.int32]:
    """For each `recent` (newest outcome first: P, F or E), the index of its
    newest failure or error, -1 for none."""

    def newest(outcomes: str) -> int:
        failure, error = outcomes.find("F"), outcomes.find("E")
        if failure < 0 or (0 <= error < failure):
            return error
        return failure

    return np.fromiter((newest(r or "") for r in recent), dtype=np.int32, count=len(recent))


# --- the decision ------------------------------------------------------------------

NOT_COLLECTED = -1


@dataclass(frozen=True, eq=False)
class DecisionRecord:
    """What a policy decided for each test of a plan, in the payload's order
    (row r is the test of stored rank r + 1). A test the runner did not
    collect has `selected` NOT_COLLECTED, rank 0, NaN propensity and no rule."""

    selected: npt.NDArray[np.int8]  # 1, 0 or NOT_COLLECTED
    propensity: npt.NDArray[np.float64]
    rule: list[str | None]
    rank: npt.NDArray[np.int32]  # 1-based, the policy's order among the collected

    def __len__(self) -> int:
        return len(self.selected)

    @classmethod
    def of(
        cls,
        n: int,
        *,
        rows: np.ndarray,
        selected: np.ndarray,
        propensity: np.ndarray,
        rules: Sequence[str],
        ranks: np.ndarray,
    ) -> DecisionRecord:
        """From the decision on the collected tests: `rows` is each one's
        payload row (-1: not in the plan, not recorded)."""
        rows = np.asarray(rows, dtype=np.intp)
        known = rows >= 0
        into = rows[known]
        chosen = np.full(n, NOT_COLLECTED, dtype=np.int8)
        chosen[into] = np.asarray(selected, dtype=bool)[known].astype(np.int8)
        logged = np.full(n, math.nan)
        logged[into] = np.asarray(propensity, dtype=np.float64)[known]
        order = np.zeros(n, dtype=np.int32)
        order[into] = np.asarray(ranks)[known]
        labels: list[str | None] = [None] * n
        for row, rule in zip(
            into.tolist(), np.asarray(rules, dtype=object)[known].tolist(), strict=True
        ):
            labels[row] = rule
        return cls(chosen, logged, labels, order)

    def encode(self) -> bytes:
        names = sorted({rule for rule in self.rule if rule is not None})
        code = {name: index for index, name in enumerate(names)}
        codes = np.fromiter(
            (255 if rule is None else code[rule] for rule in self.rule),
            dtype=np.uint8,
            count=len(self.rule),
        )
        return _frame(
            DECISION_MAGIC,
            {"n": len(self), "rules": names},
            {
                "selected": self.selected.astype(np.int8),
                "propensity": self.propensity.astype("<f8"),
                "rule": codes,
                "rank": self.rank.astype("<i4"),
            },
            {},
        )

    @classmethod
    def decode(cls, blob: bytes) -> DecisionRecord:
        record = _unframe(DECISION_MAGIC, blob)
        names: list[str] = record.header["rules"]
        codes = record.array("rule").tolist()
        return cls(
            selected=record.array("selected"),
            propensity=record.array("propensity"),
            rule=[None if code == 255 else names[code] for code in codes],
            rank=record.array("rank"),
        )

    def selected_at(self, row: int) -> bool | None:
        value = int(self.selected[row])
        return None if value == NOT_COLLECTED else bool(value)

    def propensity_at(self, row: int) -> float | None:
        value = float(self.propensity[row])
        return None if math.isnan(value) else value
