"""A plan as the API answers it (the contract is in the README), made as
JSON text: the head's fields, and each test's object joined from pieces,
most of them escaped once by the worker (records.Payload).

Each test's object is six pieces: its head (the name, the probability and
the duration, stored by the worker), the rank, selected, the reason (the
rule's sentence and the stored scored reason) and the rule. They are laid
out as columns of one object array, filled column by column with numpy's
indexing, and joined once, so no Python step runs per test. (The keys come
in that order: `test`, `probability`, `duration`, `rank`, `selected`,
`reason`, `rule`.)"""

from __future__ import annotations

import json
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any

import numpy as np
import numpy.typing as npt

from scheduler.planning import policy as policies
from scheduler.planning.policy import Decision, Policy, Rule, Shard
from scheduler.planning.records import (
    DURATION_KEY,
    HEAD_START,
    PROBABILITY_KEY,
    RANK_KEY,
    json_number,
)
from scheduler.services.plans.decision import PendingDecision
from scheduler.services.plans.items import NOT_SCORED, Covered, Items, new_test_probability

_RULES = list(Rule)
_RULE_INDEX = {rule: index for index, rule in enumerate(_RULES)}
_RULE_PIECES = np.array([f',"rule":"{rule.value}"}}' for rule in _RULES], dtype=object)
_SELECTED_PIECES = np.array(
    [',"selected":false,"reason":"', ',"selected":true,"reason":"'], dtype=object
)
_NOT_SCORED_BODY = encode_basestring_ascii(NOT_SCORED)[1:]
# head (test, probability, duration), rank, selected, reason (two pieces), rule
COLUMNS = 6


def _body(text: str) -> str:
    """A string as JSON, without its quotes (the pieces around it hold them)."""
    return encode_basestring_ascii(text)[1:-1]


# riskrank knows no test of the repository and the caller sent none: it
# cannot name the tests to run, so the whole suite runs (`run_all`).
NO_TESTS = "no_tests"
NO_TESTS_MESSAGE = (
    "riskrank knows no test of this repository yet and no test list was sent: run the whole suite"
)


def run_all(*, total: int, full_run: bool, collected: bool) -> bool:
    """Whether the caller must run its whole suite, not only the listed
    tests: riskrank names no test at all, or everything is to run and the
    list holds only the tests riskrank knows (a new test would be missed)."""
    return total == 0 or (full_run and not collected)


def head(
    *,
    plan_id: int | None,
    sha: str,
    status: str,
    model_version: int | None,
    policy: Policy,
    shard: Shard | None,
) -> dict[str, Any]:
    return {
        "plan_id": plan_id,
        "commit": sha,
        "status": status,
        "model_version": model_version,
        "mode": policy.mode,
        "budget": policy.budget,
        "by": policy.by,
        "shard": str(shard) if shard is not None else None,
        "exploration_rate": policy.exploration_rate,
    }


@dataclass(frozen=True, eq=False)
class Answer:
    """The head's fields and the `tests` list as JSON text (its objects
    joined by commas), which is how it is made and sent."""

    head: dict[str, Any]
    tests_json: str
    # A decision still to be recorded on the plan (see plan_answer's `defer`).
    pending: PendingDecision | None = None

    def to_dict(self) -> dict[str, Any]:
        tests: list[dict[str, Any]] = json.loads(f"[{self.tests_json}]")
        return self.head | {"tests": tests}

    def to_json(self) -> bytes:
        head = json.dumps(self.head, separators=(",", ":"), allow_nan=False)
        return f'{head[:-1]},"tests":[{self.tests_json}]}}'.encode()


_RANKS: list[np.ndarray] = [np.empty(0, dtype=object)]


def _rank_texts(n: int) -> np.ndarray:
    """The texts of the ranks 1 to n, at their indexes (made once per process)."""
    texts = _RANKS[0]
    if len(texts) <= n:
        texts = np.array([str(i) for i in range(max(n + 1, 2 * len(texts)))], dtype=object)
        _RANKS[0] = texts
    return texts


def reasons(
    items: Items, covered: Covered, decision: Decision, codes: npt.NDArray[np.intp]
) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate's reason, the JSON string's text in two pieces: its
    rule's sentence (made once per rule) and, for a scored test, why it got
    its score (the model's rule: that alone). `codes`: each one's rule's
    index. The second piece ends with the closing quote."""
    payload = items.payload
    row, known = covered.row, covered.known
    n = len(row)
    scored = payload.pieces[1][np.where(known, row, 0)] if len(payload) else np.empty(n, object)
    scored[~known] = _NOT_SCORED_BODY
    has = scored.astype(bool)
    first = np.full(n, "", dtype=object)
    second = np.empty(n, dtype=object)
    for code in np.unique(codes).tolist():
        rule = _RULES[code]
        of_rule = codes == code
        if rule is Rule.MUST_RUN:  # the sentence names the matching glob
            for index in np.flatnonzero(of_rule).tolist():
                stored = payload.reasons[row[index]] if known[index] else NOT_SCORED
                second[index] = f'{_body(policies.reason(decision, index, stored))}"'
            continue
        sentence = _body(policies.rule_sentence(decision, int(np.argmax(of_rule))))
        second[of_rule & ~has] = f'{sentence}"'
        with_scored = of_rule & has
        second[with_scored] = scored[with_scored]
        if rule is Rule.MODEL:
            continue
        first[with_scored] = f"{sentence}. "
        if rule in policies.SAID_BY_RULE:
            # Few tests have these rules: mend each reason that repeats its sentence.
            for index in np.flatnonzero(with_scored).tolist():
                text = scored[index][:-1]  # without the closing quote
                rest = policies.unsaid(rule, text)
                if rest != text:
                    first[index] = "" if not rest else f"{sentence}. "
                    second[index] = f'{rest or sentence}"'
    return first, second


def pieces(items: Items, covered: Covered, decision: Decision) -> np.ndarray:
    """Each candidate's JSON object in COLUMNS pieces (an object array of
    shape (candidates, COLUMNS)); joined, each row is `,{...}`."""
    row, known = covered.row, covered.known
    n = len(row)
    table = np.empty((n, COLUMNS), dtype=object)
    if n == 0:
        return table
    heads = items.heads()
    if covered.collected is None:  # every test of the plan, in its order
        table[:, 0] = heads
    else:
        if len(heads):
            table[:, 0] = heads[np.where(known, row, 0)]
        probability = repr(new_test_probability(items.payload))
        for index in np.flatnonzero(~known).tolist():
            name = encode_basestring_ascii(covered.collected[index])
            table[index, 0] = (
                f"{HEAD_START}{name}{PROBABILITY_KEY}{probability}{DURATION_KEY}null{RANK_KEY}"
            )
    codes = np.fromiter(map(_RULE_INDEX.__getitem__, decision.rules), dtype=np.intp, count=n)
    table[:, 1] = _rank_texts(n)[decision.ranks]
    table[:, 2] = _SELECTED_PIECES[decision.selected.astype(np.intp)]
    table[:, 3], table[:, 4] = reasons(items, covered, decision, codes)
    table[:, 5] = _RULE_PIECES[codes]
    return table


def joined(table: np.ndarray, rows: npt.NDArray[np.intp]) -> str:
    """The `tests` list's objects for these rows, in this order, comma-joined."""
    if not len(rows):
        return ""
    return "".join(table[rows].ravel().tolist())[1:]


@dataclass(frozen=True, eq=False)
class PlannedTests:
    """The `tests` of a fallback answer as columns, in the order listed."""

    names: list[str]
    ranks: list[int]
    probability: list[float | None]
    selected: list[bool]
    reasons: list[str]
    durations: list[float | None]
    rules: list[str]

    def json(self) -> str:
        """The objects comma-joined, their keys in the order of a plan's."""
        text = encode_basestring_ascii
        number = json_number
        return ",".join(
            [
                f'{{"test":{text(name)},"probability":{number(probability)},'
                f'"duration":{number(duration)},"rank":{rank},'
                f'"selected":{"true" if selected else "false"},"reason":{text(reason)},'
                f'"rule":"{rule}"}}'
                for name, rank, probability, selected, reason, duration, rule in zip(
                    self.names,
                    self.ranks,
                    self.probability,
                    self.selected,
                    self.reasons,
                    self.durations,
                    self.rules,
                    strict=True,
                )
            ]
        )
