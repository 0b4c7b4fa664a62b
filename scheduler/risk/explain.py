"""Reasons a person can read, made from a test's features."""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from scheduler.risk.features import FeatureMatrix, StrongestCoFailure

# How each feature reads when it pushed a score up. `{v}` is its value.
PHRASES: dict[str, str] = {
    "fail_rate_5": "failed {share5} runs",
    "fail_rate_20": "failed {share20} of its last 20 runs",
    "fail_rate_all": "fails in {pct_all} of its runs",
    "last_failed": "failed in its last run",
    "builds_since_failure": "last failed {since} ago",
    "flip_rate": "often flips between passing and failing",
    "flaky_rate": "was flaky in {pct_flaky} of its runs",
    "log_runs": "has a long history",
    "age_days": "is {age} days old",
    "duration_mean": "takes {duration}",
    "is_new": "is new to riskrank",
    "new_or_recent": "{recency}",
    "changed_files": "the change touches {files} files",
    "changed_lines": "the change is {lines} lines",
    "changed_extensions": "the change touches {extensions} kinds of file",
    "changed_top_dirs": "the change spans {tops} top directories",
    "same_extension_share": "the change is in files like its own",
    "same_top_dir_share": "the change is in its part of the tree",
    "own_file_changed": "its own file changed",
    "subject_changed": "the code it is named after changed",
    "cofail_max": "a changed file has failed together with it before",
    "cofail_sum": "changed files failed together with it {cofail} times",
    "cochange_max": "a changed file often changes with it",
    "path_distance": "it is {distance} directory steps from the change",
    "token_jaccard": "its name resembles a changed path",
    "symbol_named": "it is named after a function or class the change touched",
    "symbol_tokens": "its name resembles a function or class the change touched",
}


def _count(value: float) -> str:
    return str(round(value))


def _builds(value: float) -> str:
    count = round(value)
    return f"{count} build" if count == 1 else f"{count} builds"


class _Values(dict[str, str]):
    """The placeholders of the phrases, each formatted only when a phrase
    asks for it (a plan formats ten thousand reasons)."""

    def __init__(self, features: Mapping[str, float]) -> None:
        super().__init__()
        self._features = features

    def _get(self, name: str) -> float:
        value = self._features.get(name, math.nan)
        return 0.0 if math.isnan(value) else float(value)

    def __missing__(self, key: str) -> str:
        get = self._get
        if key == "share5":
            last5 = min(round(max(math.expm1(get("log_runs")), 0.0)), 5)
            text = f"{round(get('fail_rate_5') * last5)} of its last {last5}" if last5 else "some"
        elif key == "recency":
            since = self._features.get("builds_since_failure", math.nan)
            if get("is_new"):
                text = "is new to riskrank"
            elif math.isnan(since):
                text = "has never failed"
            else:
                text = f"last failed {_builds(since)} ago"
        elif key == "duration":
            duration = get("duration_mean")
            text = f"{duration:.1f} s" if duration >= 0.1 else "under 0.1 s"
        elif key == "since":
            text = _builds(get("builds_since_failure"))
        elif key in _PERCENT:
            text = f"{get(_PERCENT[key]):.0%}"
        else:
            text = _count(get(_COUNTS[key]))
        self[key] = text
        return text


_PERCENT = {"share20": "fail_rate_20", "pct_all": "fail_rate_all", "pct_flaky": "flaky_rate"}
_COUNTS = {
    "since": "builds_since_failure",
    "age": "age_days",
    "files": "changed_files",
    "lines": "changed_lines",
    "extensions": "changed_extensions",
    "tops": "changed_top_dirs",
    "cofail": "cofail_sum",
    "distance": "path_distance",
}


NOTHING = "No sign of risk in its history or in this change"

# The features that say how a changed file and the test failed together:
# with a CoFailure, both read as one phrase that names the file.
COFAIL_FEATURES = ("cofail_max", "cofail_sum")


@dataclass(frozen=True)
class CoFailure:
    """The changed path that failed together with a test most often, and
    how many times (features.strongest_cofailure); count 0 when none did."""

    path: str
    count: int


def _cofailure_phrase(cofailure: CoFailure) -> str:
    if cofailure.count <= 0:
        return "no changed file has failed together with it yet"
    times = "time" if cofailure.count == 1 else "times"
    return f"{cofailure.path} changed and failed together with it {cofailure.count} {times}"


def sentence(
    reasons: Sequence[str], features: Mapping[str, float], cofailure: CoFailure | None = None
) -> str:
    """`reasons` (feature names, strongest first) as one sentence. With a
    `cofailure`, the co-failure features name its path (once, when both
    are reasons); without one they speak of the changed files in general."""
    values = _Values(features)
    phrases: list[str] = []
    named = ""  # the phrase that starts with a path, which keeps its case
    for name in reasons:
        if cofailure is not None and name in COFAIL_FEATURES:
            phrase = _cofailure_phrase(cofailure)
            named = phrase if cofailure.count > 0 else ""
        elif name in PHRASES:
            phrase = PHRASES[name].format_map(values)
        else:
            continue
        if phrase not in phrases:
            phrases.append(phrase)
    if not phrases:
        return NOTHING
    text = "; ".join(phrases)
    return text if phrases[0] == named else text[0].upper() + text[1:]


def _reads(name: str) -> tuple[str, ...]:
    """The features a phrase's placeholders read."""
    reads: list[str] = []
    for _, key, _, _ in string.Formatter().parse(PHRASES[name]):
        if key == "share5":
            reads += ["fail_rate_5", "log_runs"]
        elif key == "recency":
            reads += ["is_new", "builds_since_failure"]
        elif key == "duration":
            reads.append("duration_mean")
        elif key is not None:
            reads.append(_PERCENT.get(key) or _COUNTS[key])
    return tuple(reads)


READS: dict[str, tuple[str, ...]] = {name: _reads(name) for name in PHRASES}


def sentences(
    reasons: Sequence[Sequence[str]],
    matrix: FeatureMatrix,
    *,
    paths: Sequence[str] = (),
    strongest: StrongestCoFailure | None = None,
) -> list[str]:
    """`sentence` of every row of `matrix` with its `reasons`, each distinct
    sentence formatted once: a plan has ten thousand rows, mostly with the
    same few reasons and values. `strongest` (per row, into the changed
    `paths`) names the co-failing file; without it none is named."""
    # Per distinct list of reasons: the features its phrases read, and
    # whether it names a co-failing file.
    specs: dict[tuple[str, ...], tuple[tuple[str, ...], bool]] = {}
    for names in reasons:
        spec = tuple(names)
        if spec not in specs:
            distinct = dict.fromkeys(read for name in spec for read in READS.get(name, ()))
            named = strongest is not None and any(name in COFAIL_FEATURES for name in spec)
            specs[spec] = (tuple(distinct), named)
    needed = {read for reads, _ in specs.values() for read in reads}
    # NaN reads as 0 in every phrase; as a key it must be 0 too (NaN != NaN).
    columns: dict[str, list[float]] = {}
    for name in needed:
        column = matrix.column(name)
        columns[name] = np.where(np.isnan(column), 0.0, column).tolist()
    path_index = strongest.path_index.tolist() if strongest is not None else []
    counts = strongest.failed_together.tolist() if strongest is not None else []
    made: dict[tuple[object, ...], str] = {}
    result: list[str] = []
    for row, names in enumerate(reasons):
        if not names:
            result.append(NOTHING)
            continue
        spec = tuple(names)
        reads, named = specs[spec]
        values = tuple(columns[read][row] for read in reads)
        key = (spec, values, path_index[row], counts[row]) if named else (spec, values)
        text = made.get(key)
        if text is None:
            cofailure = None
            if named:
                number = path_index[row]
                cofailure = CoFailure(paths[number] if number >= 0 else "", round(counts[row]))
            text = made[key] = sentence(names, dict(zip(reads, values, strict=True)), cofailure)
        result.append(text)
    return result


# What the heuristic (scheduler.risk.heuristic) reads, strongest first; and
# last, co-failure, which it does not score but reports: the changed path a
# test started failing with before is where a reader looks first.
HEURISTIC_SIGNALS = (
    "symbol_named",
    "last_failed",
    "own_file_changed",
    "is_new",
    "builds_since_failure",
    "cofail_sum",
)


def heuristic_reasons_of(matrix: FeatureMatrix, *, limit: int = 3) -> list[list[str]]:
    """Per row, the signals the heuristic score saw, strongest first."""
    present = np.stack(
        [np.nan_to_num(matrix.column(name), nan=0.0) > 0 for name in HEURISTIC_SIGNALS], axis=1
    )
    reasons: list[list[str]] = [[] for _ in range(len(matrix.tests))]
    for row, column in zip(*np.nonzero(present), strict=True):
        if len(reasons[row]) < limit:
            reasons[row].append(HEURISTIC_SIGNALS[column])
    return reasons
