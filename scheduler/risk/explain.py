"""Reasons a person can read, made from a test's features."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

# How each feature reads when it pushed a score up. `{v}` is its value.
PHRASES: dict[str, str] = {
    "fail_rate_5": "failed {share5} of its last runs",
    "fail_rate_20": "failed {share20} of its last 20 runs",
    "fail_rate_all": "fails in {pct_all} of its runs",
    "last_failed": "failed in its last run",
    "builds_since_failure": "last failed {since} builds ago",
    "flip_rate": "often flips between passing and failing",
    "flaky_rate": "was flaky in {pct_flaky} of its runs",
    "log_runs": "has a long history",
    "age_days": "is {age} days old",
    "duration_mean": "takes {duration}",
    "is_new": "is new to riskrank",
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
}


def _count(value: float) -> str:
    return str(round(value))


def _values(features: Mapping[str, float]) -> dict[str, str]:
    def get(name: str) -> float:
        value = features.get(name, math.nan)
        return 0.0 if math.isnan(value) else float(value)

    runs = max(math.expm1(get("log_runs")), 0.0)
    last5 = min(round(runs), 5)
    duration = get("duration_mean")
    return {
        "share5": f"{round(get('fail_rate_5') * last5)} of {last5}" if last5 else "some",
        "share20": f"{get('fail_rate_20'):.0%}",
        "pct_all": f"{get('fail_rate_all'):.0%}",
        "since": _count(get("builds_since_failure")),
        "pct_flaky": f"{get('flaky_rate'):.0%}",
        "age": _count(get("age_days")),
        "duration": f"{duration:.1f} s" if duration >= 0.1 else "under 0.1 s",
        "files": _count(get("changed_files")),
        "lines": _count(get("changed_lines")),
        "extensions": _count(get("changed_extensions")),
        "tops": _count(get("changed_top_dirs")),
        "cofail": _count(get("cofail_sum")),
        "distance": _count(get("path_distance")),
    }


def sentence(reasons: Sequence[str], features: Mapping[str, float]) -> str:
    """`reasons` (feature names, strongest first) as one sentence."""
    values = _values(features)
    phrases = [PHRASES[name].format(**values) for name in reasons if name in PHRASES]
    if not phrases:
        return "no sign of risk in its history or in this change"
    text = "; ".join(phrases)
    return text[0].upper() + text[1:]


def heuristic_reasons(features: Mapping[str, float], *, limit: int = 3) -> list[str]:
    """The signals the heuristic score saw, strongest first."""
    reasons = []
    for name in ("last_failed", "own_file_changed", "is_new", "fail_rate_5", "cofail_sum"):
        value = features.get(name, math.nan)
        if not math.isnan(value) and value > 0:
            reasons.append(name)
    return reasons[:limit]
