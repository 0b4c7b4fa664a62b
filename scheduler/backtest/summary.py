"""A backtest's figures: each ordering's measures per build, and their means.

The measures are those of `scheduler.evaluation.metrics` (definitions and
sources there and in the README): APFD, APFDc, NAPFD under 10%, 50% and 80%
of the build's total duration (COLEMAN's rule), recall of the failing tests
and whether a failing build is caught within 10%, 20%, 33% and 50% of its
tests and of its time, and the position of the first failure.

Every figure comes in two views: ``all`` (every failing test is a fault) and
``changes`` (only the failing tests that are status changes: they did not
fail in their previous run, or are new; the other failing tests count as
passing). A build whose view has no failure has no value for any measure.

Two means per measure: ``mean`` over the builds with at least one failure
(in the view), and ``mean_all`` over every evaluated build with a
failure-free build counted as 1, which is how COLEMAN reports (not given for
the first failure's position, where 1 would mean the first test). The random
baseline's value for a build is the mean over its seeds; the optimal order
is computed per view (failing tests of the view first, shortest first)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from scheduler.backtest.runner import (
    BASELINES,
    NOT_TRAINED,
    OPTIMAL,
    OUTCOMES,
    PROMOTED,
    RANDOM,
    RISKRANK,
    SIMPLE_ORDERINGS,
    BacktestResult,
    BuildRecord,
    TrainingRecord,
)
from scheduler.evaluation import metrics, paired
from scheduler.planning import monitor
from scheduler.planning.policy import BUDGET_RULES
from scheduler.risk import calibration

Flags: TypeAlias = npt.NDArray[np.bool_]
Floats: TypeAlias = npt.NDArray[np.float64]
Value: TypeAlias = float | None

VIEWS = ("all", "changes")
TIME_BUDGETS = (0.1, 0.5, 0.8)
SHARES = (0.1, 0.2, 0.33, 0.5)
FIRST_FAILURE = "first_failure"
# by_scorer's part for the newest refused model, scored where it did not serve.
UNSERVED = "model, not served"


def _percent(share: float) -> str:
    return f"{round(share * 100)}"


def measure_names() -> list[str]:
    """Every measure, in the order tables list them."""
    names = ["apfd", "apfdc"]
    names += [f"napfd_{_percent(b)}" for b in TIME_BUDGETS]
    for kind in ("tests", "time"):
        names += [f"recall_{kind}_{_percent(s)}" for s in SHARES]
        names += [f"caught_{kind}_{_percent(s)}" for s in SHARES]
    names.append(FIRST_FAILURE)
    return names


MEASURES = tuple(measure_names())


def _number(value: float | bool | int | None) -> Value:
    return None if value is None else float(value)


def measures(failed: Flags, durations: Floats) -> dict[str, Value]:
    """Every measure of one build's order: `failed` and `durations` in run
    order. All None when nothing fails."""
    if not failed.any():
        return dict.fromkeys(MEASURES)
    values: dict[str, Value] = {
        "apfd": metrics.apfd(failed),
        "apfdc": metrics.apfdc(failed, durations),
    }
    for budget in TIME_BUDGETS:
        values[f"napfd_{_percent(budget)}"] = metrics.napfd(failed, durations, budget)
    for share in SHARES:
        p = _percent(share)
        values[f"recall_tests_{p}"] = metrics.recall_at_tests(failed, share)
        values[f"caught_tests_{p}"] = _number(metrics.caught_at_tests(failed, share))
        values[f"recall_time_{p}"] = metrics.recall_at_time(failed, durations, share)
        values[f"caught_time_{p}"] = _number(metrics.caught_at_time(failed, durations, share))
    values[FIRST_FAILURE] = _number(metrics.first_failure_position(failed))
    return {name: values[name] for name in MEASURES}


def view_failures(record: BuildRecord, view: str) -> Flags:
    if view == "all":
        return record.failed
    if view == "changes":
        return record.failed & record.changed
    raise ValueError(f"view must be one of {', '.join(VIEWS)}, not {view!r}")


def _mean_of(rows: Sequence[dict[str, Value]]) -> dict[str, Value]:
    """Per measure, the mean of the rows' values (None stays None)."""
    result: dict[str, Value] = {}
    for name in MEASURES:
        values = [row[name] for row in rows]
        known = [v for v in values if v is not None]
        result[name] = sum(known) / len(known) if known else None
    return result


def orderings(result: BacktestResult) -> list[str]:
    """The orderings a backtest compares: riskrank's, the baselines and the
    optimal order (the random seeds as one)."""
    names: list[str] = []
    for record in result.records[:1]:
        for name in record.orders:
            merged = RANDOM if name.startswith(RANDOM + "/") else name
            if merged not in names:
                names.append(merged)
    return [*names, OPTIMAL] if names else []


def build_measures(record: BuildRecord, view: str) -> dict[str, dict[str, Value]]:
    """Each ordering's measures on one build, in one view."""
    failed = view_failures(record, view)
    durations = record.durations
    per: dict[str, dict[str, Value]] = {}
    randoms: list[dict[str, Value]] = []
    for name, order in record.orders.items():
        values = measures(failed[order], durations[order])
        if name.startswith(RANDOM + "/"):
            randoms.append(values)
        else:
            per[name] = values
    if randoms:
        per[RANDOM] = _mean_of(randoms)
    best = metrics.optimal_order(failed, durations)
    per[OPTIMAL] = measures(failed[best], durations[best])
    return per


def aggregate(rows: Sequence[dict[str, Value]]) -> dict[str, dict[str, Value | int]]:
    """Per measure: `mean` over the builds with a value, `builds` how many
    those are, and `mean_all` over every build, a build without a value
    (nothing failed) counted as 1."""
    result: dict[str, dict[str, Value | int]] = {}
    total = len(rows)
    for name in MEASURES:
        known = [row[name] for row in rows if row[name] is not None]
        values = [v for v in known if v is not None]
        entry: dict[str, Value | int] = {
            "mean": sum(values) / len(values) if values else None,
            "builds": len(values),
        }
        if name != FIRST_FAILURE:
            entry["mean_all"] = (sum(values) + (total - len(values))) / total if total else None
        result[name] = entry
    return result


def per_build(result: BacktestResult, view: str) -> list[dict[str, dict[str, Value]]]:
    """Each evaluated build's measures in a view, computed once per result
    (the JSON and the report both need them)."""
    rows = result.measured.get(view)
    if rows is None:
        rows = result.measured[view] = [build_measures(record, view) for record in result.records]
    return rows


def figures(
    result: BacktestResult, rows: dict[str, list[dict[str, dict[str, Value]]]] | None = None
) -> dict[str, dict[str, dict[str, dict[str, Value | int]]]]:
    """view -> ordering -> measure -> {mean, mean_all, builds}."""
    rows = rows or {view: per_build(result, view) for view in VIEWS}
    names = orderings(result)
    return {
        view: {name: aggregate([build[name] for build in rows[view]]) for name in names}
        for view in VIEWS
    }


def selection(result: BacktestResult) -> dict[str, Value | int]:
    """What the plans kept: mean share of the tests and of the time
    selected, and per view the recall of the failing tests among the
    selected ones and the share of failing builds with a failure selected."""
    shares, times = [], []
    recalls: dict[str, list[float]] = {view: [] for view in VIEWS}
    caught: dict[str, list[float]] = {view: [] for view in VIEWS}
    full = 0
    for record in result.records:
        n = len(record.names)
        if n == 0:
            continue
        shares.append(float(record.selected.sum()) / n)
        total = float(record.durations.sum())
        times.append(float(record.durations[record.selected].sum()) / total if total else 1.0)
        full += int(record.full_run)
        for view in VIEWS:
            recall = metrics.recall_of_selection(view_failures(record, view), record.selected)
            if recall is not None:
                recalls[view].append(recall)
                caught[view].append(float(recall > 0))
    summary: dict[str, Value | int] = {
        "tests_share": _avg(shares),
        "time_share": _avg(times),
        "full_runs": full,
    }
    for view in VIEWS:
        summary[f"recall_{view}"] = _avg(recalls[view])
        summary[f"caught_{view}"] = _avg(caught[view])
        summary[f"failing_builds_{view}"] = len(recalls[view])
    return summary


SOURCES = ("budget", "exploration", "escalation", "expansion", "full_run")
# Builds per window in which the live estimate is set against the true miss rate.
ESTIMATE_WINDOW = monitor.WINDOW_BUILDS
# How close the estimate must come to the true rate, relative to it.
ESTIMATE_TOLERANCE = 0.25


def trimming_figures(result: BacktestResult) -> dict[str, Any]:
    """What the plans ran by source (mean share of the tests each selected),
    the builds escalated, and, closed loop, the live estimate of the share
    of failures trimming let through against the true share (every outcome
    is known in a backtest), per window of ESTIMATE_WINDOW scored builds:
    the estimate from those builds' exploration samples alone."""
    shares: dict[str, list[float]] = {source: [] for source in SOURCES}
    rules: dict[str, list[float]] = {rule.value: [] for rule in BUDGET_RULES}
    for record in result.records:
        n = len(record.names)
        if n == 0 or record.selected_by is None:
            continue
        for source in SOURCES:
            shares[source].append(record.selected_by.get(source, 0) / n)
        for rule in rules:
            rules[rule].append((record.budget_by or {}).get(rule, 0) / n)
    windows: list[dict[str, Any]] = []
    records = [r for r in result.records if r.tally is not None]
    for start in range(0, len(records) - ESTIMATE_WINDOW + 1, ESTIMATE_WINDOW):
        chunk = records[start : start + ESTIMATE_WINDOW]
        found = monitor.estimate(r.tally for r in chunk if r.tally is not None)
        failures = sum(int(r.failed.sum()) for r in chunk)
        missed = sum(int((r.failed & ~r.selected).sum()) for r in chunk)
        true = missed / failures if failures else None
        within = (
            abs(found.rate - true) <= ESTIMATE_TOLERANCE * true
            if found.rate is not None and true
            else (found.rate == true if true is not None else None)
        )
        windows.append(
            {
                "first_build": chunk[0].build,
                "last_build": chunk[-1].build,
                "failures": failures,
                "missed": missed,
                "true_miss_rate": None if true is None else round(true, 6),
                "explored_failures": found.explored_failures,
                "estimated_miss_rate": None if found.rate is None else round(found.rate, 6),
                "low": None if found.low is None else round(found.low, 6),
                "high": None if found.high is None else round(found.high, 6),
                "true_in_interval": (
                    None
                    if true is None or found.low is None or found.high is None
                    else found.low <= true <= found.high
                ),
                "within_tolerance": within,
                "escalated_builds": sum(1 for r in chunk if r.escalation is not None),
            }
        )
    judged = [w["within_tolerance"] for w in windows if w["within_tolerance"] is not None]
    covered = [w["true_in_interval"] for w in windows if w["true_in_interval"] is not None]
    first_escalation = next((r for r in result.records if r.escalation is not None), None)
    return {
        "selected_share_by": {source: _avg(values) for source, values in shares.items()},
        # The budget's share split by why: the rules that force tests in
        # (what no budget can go below) and the priority prefix ("model").
        "budget_share_by_rule": {rule: _avg(values) for rule, values in rules.items()},
        "escalated_builds": sum(1 for r in result.records if r.escalation is not None),
        "expanded_builds": sum(
            1 for r in result.records if r.selected_by and r.selected_by.get("expansion")
        ),
        "first_escalation": (
            None
            if first_escalation is None
            else {"build": first_escalation.build, "reason": first_escalation.escalation}
        ),
        "window": ESTIMATE_WINDOW,
        "tolerance": ESTIMATE_TOLERANCE,
        "windows": windows,
        "windows_within_tolerance": _avg([float(x) for x in judged]),
        "windows_true_in_interval": _avg([float(x) for x in covered]),
    }


def calibration_figures(result: BacktestResult) -> dict[str, Any]:
    """Whether the plans' probabilities held (`held_figures`), over the
    scored builds and over the second half of them (the builds after the
    warm-up cut as `--half` cuts them: with `--half all`, the same figures
    as a `--half second` run)."""
    records = list(result.records)
    second = records[len(records) // 2 :] if result.config.half == "all" else records
    return (
        held_figures(records)
        | {"by_scorer": by_scorer(records), "by_build": by_build(records)}
        | {
            "second_half": held_figures(second)
            | {"by_scorer": by_scorer(second), "by_build": by_build(second)}
        }
    )


# The kinds of build `by_build` tells apart, in the order it decides them.
BUILD_KINDS = ("full run", "escalated", "expanded", "trimmed", "ran all")


def build_kind(record: BuildRecord) -> str:
    """What a plan did with the build: a full run, escalated (every test
    over the budget ran), expanded (its dropped tests ran once enough
    watched tests failed), trimmed (some tests dropped), or every test run
    for another reason (the budget held them all)."""
    if record.full_run:
        return "full run"
    if record.escalation is not None:
        return "escalated"
    if (record.selected_by or {}).get("expansion"):
        return "expanded"
    return "trimmed" if not record.selected.all() else "ran all"


def by_build(records: Sequence[BuildRecord]) -> dict[str, dict[str, Any]]:
    """The failures the probabilities expected beside those that came, per
    kind of build (`build_kind`), and in the trimmed builds what the plans
    said they dropped beside what they dropped. Failures come together: a
    build where tens of tests break at once (which expansion catches) holds
    far more than its probabilities said, so the others hold fewer, and a
    miss risk stated on the calibrated probabilities is more than the
    trimmed builds drop."""
    result: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.probabilities is None or len(record.names) == 0:
            continue
        p = np.asarray(record.probabilities, dtype=np.float64)
        part = result.setdefault(
            build_kind(record),
            {"builds": 0, "expected": 0.0, "failures": 0, "stated_dropped": 0.0, "dropped": 0},
        )
        out = ~record.selected
        part["builds"] += 1
        part["expected"] += float(p.sum())
        part["failures"] += int(record.failed.sum())
        part["stated_dropped"] += float(p[out].sum())
        part["dropped"] += int(record.failed[out].sum())
    return {
        kind: result[kind]
        | {
            "expected": round(result[kind]["expected"], 3),
            "stated_dropped": round(result[kind]["stated_dropped"], 3),
        }
        for kind in BUILD_KINDS
        if kind in result
    }


def by_scorer(records: Sequence[BuildRecord]) -> dict[str, dict[str, Any]]:
    """The reliability of the builds the heuristic served and of those a
    model served, apart: issue 13 asks for a calibration that holds for
    both, and a good one on the many builds of one hides a bad one on the
    few of the other. None for a scorer that served no build.

    Beside them, "model, not served": on the builds the heuristic served,
    the probabilities the newest refused model would have served
    (BuildRecord.unserved_probabilities), so that a history where no model
    is ever promoted still says whether a model's probabilities hold."""
    parts: dict[str, list[tuple[BuildRecord, Floats]]] = {
        "heuristic": [
            (r, np.asarray(r.probabilities, dtype=np.float64))
            for r in records
            if r.model_version is None and r.probabilities is not None
        ],
        "model": [
            (r, np.asarray(r.probabilities, dtype=np.float64))
            for r in records
            if r.model_version is not None and r.probabilities is not None
        ],
        UNSERVED: [
            (r, np.asarray(r.unserved_probabilities, dtype=np.float64))
            for r in records
            if r.model_version is None and r.unserved_probabilities is not None
        ],
    }
    result: dict[str, dict[str, Any]] = {}
    for name, part in parts.items():
        held = [(r, p) for r, p in part if len(r.names)]
        if not held:
            if name != UNSERVED:
                result[name] = {"builds": 0, "ece": None}
            continue
        p = np.concatenate([p for _, p in held])
        y = np.concatenate([r.failed for r, _ in held])
        table = calibration.reliability(p, y)
        result[name] = {
            "builds": len(held),
            "ece": table.ece,
            "mean_predicted": float(p.mean()),
            "observed_rate": float(y.mean()),
            "reliability": table.as_json(),
        }
        if name == UNSERVED:
            result[name]["versions"] = sorted(
                {r.unserved_version for r, _ in held if r.unserved_version is not None}
            )
    return result


def held_figures(records: Sequence[BuildRecord]) -> dict[str, Any]:
    """The reliability table (deciles of the predicted probability over
    every test of the builds: the mean predicted beside the observed failure
    rate) and its expected calibration error; what the plans said they
    dropped (expected failures, and the chance of dropping at least one)
    beside what they dropped, and how often the drop stayed within the
    stated 95% bound; the share of all failures kept, the mean
    share per failing build, and the mean share of the tests run."""
    probabilities, outcomes = [], []
    stated: list[float] = []
    dropped: list[float] = []
    any_stated, any_dropped, bounds = [], [], []
    trimmed: list[float] = []  # within the bound, of the builds that dropped a test
    per_build, ran = [], []
    kept = failures = 0
    for record in records:
        if record.probabilities is None or len(record.names) == 0:
            continue
        p = np.asarray(record.probabilities, dtype=np.float64)
        probabilities.append(p)
        outcomes.append(record.failed)
        out = ~record.selected
        stated.append(calibration.expected_failures(p[out]))
        any_stated.append(calibration.any_failure(p[out]))
        bounds.append(calibration.failures_bound(p[out]))
        dropped.append(float(record.failed[out].sum()))
        if out.any():
            trimmed.append(float(dropped[-1] <= bounds[-1]))
        any_dropped.append(float(record.failed[out].any()))
        ran.append(float(record.selected.mean()))
        if record.failed.any():
            per_build.append(float(record.failed[record.selected].sum() / record.failed.sum()))
        kept += int(record.failed[record.selected].sum())
        failures += int(record.failed.sum())
    if not probabilities:
        return {"reliability": None, "builds": 0}
    table = calibration.reliability(np.concatenate(probabilities), np.concatenate(outcomes))
    return {
        "builds": len(probabilities),
        "first_build": records[0].build,
        "last_build": records[-1].build,
        "reliability": table.as_json(),
        "mean_predicted": float(np.concatenate(probabilities).mean()),
        "observed_rate": float(np.concatenate(outcomes).mean()),
        "expected_failures_dropped": _avg(stated),
        "failures_dropped": _avg(dropped),
        "probability_any_dropped": _avg(any_stated),
        # The miss risk's 95% bound (calibration.failures_bound) and the
        # share of builds that dropped at most that many failures: 0.95 or
        # more where the probabilities and their independence hold.
        "failures_dropped_bound": _avg([float(b) for b in bounds]),
        "builds_within_bound": _avg([float(d <= b) for d, b in zip(dropped, bounds, strict=True)]),
        # The same over the builds that dropped a test: a full run or an
        # escalated build drops nothing and is within any bound.
        "trimmed_builds_within_bound": _avg(trimmed),
        "trimmed_builds": len(trimmed),
        "builds_with_a_failure_dropped": _avg(any_dropped),
        "tests_share": _avg(ran),
        "failures_kept_per_failing_build": _avg(per_build),
        "failing_builds": len(per_build),
        "failures_kept_share": kept / failures if failures else None,
        "failures": failures,
    }


def _avg(values: Sequence[float]) -> Value:
    return sum(values) / len(values) if values else None


def cell(value: Value | int, measure: str) -> str:
    """A mean as the tables print it."""
    if value is None:
        return "-"
    return f"{value:.2f}" if measure == FIRST_FAILURE else f"{value:.4f}"


def lower_is_better(measure: str) -> bool:
    return measure == FIRST_FAILURE


def strongest_baseline(
    by_ordering: dict[str, dict[str, dict[str, Value | int]]],
    measure: str,
    names: Sequence[str] = BASELINES,
) -> tuple[str, Value]:
    """The baseline with the best mean for a measure (the first listed on a
    tie; ("", None) when none has a value); the optimal order is a bound, not
    a baseline."""
    best: tuple[str, Value] = ("", None)
    better: Callable[[float, float], bool] = (
        (lambda a, b: a < b) if lower_is_better(measure) else (lambda a, b: a > b)
    )
    for name in names:
        entry = by_ordering.get(name)
        if entry is None:
            continue
        value = entry[measure]["mean"]
        if value is None:
            continue
        if best[1] is None or better(float(value), float(best[1])):
            best = (name, float(value))
    return best


# The measures riskrank is compared on, paired per build, against the
# strongest simple ordering: the whole order (APFD, APFDc) and what a budget
# of the tests or of the time would have caught.
PAIRED_MEASURES = (
    "apfd",
    "apfdc",
    *(f"recall_{kind}_{_percent(s)}" for kind in ("tests", "time") for s in SHARES),
)


def strongest_simple(
    by_ordering: dict[str, dict[str, dict[str, Value | int]]], measure: str
) -> str | None:
    """The simple ordering (SIMPLE_ORDERINGS: neither random nor the optimal
    order) with the best mean on a measure over the scored builds; the first
    listed on a tie; None when no build has a value."""
    return strongest_baseline(by_ordering, measure, SIMPLE_ORDERINGS)[0] or None


def differences(rows: Sequence[dict[str, dict[str, Value]]], measure: str, other: str) -> Floats:
    """riskrank's value minus `other`'s, per build where both have one (the
    builds with a failure in the view), in build order; negated where lower
    is better, so that above 0 always means riskrank did better."""
    sign = -1.0 if lower_is_better(measure) else 1.0
    values = [
        sign * (float(mine) - float(theirs))
        for row in rows
        if (mine := row[RISKRANK][measure]) is not None
        and (theirs := row[other][measure]) is not None
    ]
    return np.array(values, dtype=np.float64)


def paired_comparison(
    rows: dict[str, list[dict[str, dict[str, Value]]]],
    figs: dict[str, dict[str, dict[str, dict[str, Value | int]]]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """view -> measure -> riskrank against the strongest simple ordering, per
    build: the mean difference, its bootstrap 95% interval, wins, losses and
    ties, and the verdict (`scheduler.evaluation.paired`)."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for view in VIEWS:
        result[view] = {}
        for measure in PAIRED_MEASURES:
            strongest = strongest_simple(figs[view], measure)
            if strongest is None or RISKRANK not in figs[view]:
                result[view][measure] = {"strongest": None, **paired.compare([]).as_json()}
                continue
            found = paired.compare(differences(rows[view], measure, strongest))
            result[view][measure] = {"strongest": strongest, **found.as_json()}
    return result


def paired_cell(entry: dict[str, Any], separator: str = " ") -> str:
    """A paired comparison as the tables print it: the difference, the
    interval, wins/losses/ties and the verdict."""
    if entry["verdict"] is None:
        return "-"
    return separator.join(
        (
            f"{entry['mean_difference']:+.4f}",
            f"[{entry['low']:+.4f}, {entry['high']:+.4f}]",
            f"{entry['wins']}/{entry['losses']}/{entry['ties']}",
            entry["verdict"],
        )
    )


def half_text(result: BacktestResult) -> str:
    """Which builds the figures are from, and the protocol they serve."""
    half = result.config.half
    records = result.records
    where = (
        f"builds {records[0].build} to {records[-1].build}, {len(records)} of "
        f"{result.evaluated} after the warm-up"
        if records
        else "no build"
    )
    protocol = "design choices are made on the first half, figures reported on the second"
    if half == "second":
        return f"scored: the second half of the builds ({where}); {protocol}."
    if half == "first":
        return (
            f"scored: the first half of the builds ({where}), the half design choices are "
            f"made on; {protocol} (--half second)."
        )
    return (
        f"scored: every build after the warm-up ({where}), both halves; {protocol} "
        "(--half first, --half second): a figure from the half that was looked at is not "
        "held out."
    )


def learning_curve(
    result: BacktestResult, rows: list[dict[str, dict[str, Value]]]
) -> list[dict[str, Any]]:
    """After each retraining: riskrank's and the strongest baseline's mean
    APFD (all failures) over the builds up to the next retraining."""
    curve = []
    indexes = [record.index for record in result.records]
    for number, training in enumerate(result.trainings):
        end = (
            result.trainings[number + 1].index
            if number + 1 < len(result.trainings)
            else indexes[-1] + 1
        )
        window = [
            row for row, index in zip(rows, indexes, strict=True) if training.index <= index < end
        ]
        means = {
            name: aggregate([row[name] for row in window])["apfd"]["mean"]
            for name in (RISKRANK, *BASELINES)
            if window and name in window[0]
        }
        curve.append(
            {
                **training.as_json(),
                "builds": len(window),
                "apfd": means.get(RISKRANK),
                "baselines_apfd": {k: v for k, v in means.items() if k != RISKRANK},
            }
        )
    return curve


def rolling_apfd(
    result: BacktestResult, rows: list[dict[str, dict[str, Value]]], name: str, window: int
) -> list[tuple[int, float]]:
    """(build index, mean APFD of the last `window` failing builds) for an ordering."""
    points: list[tuple[int, float]] = []
    recent: list[float] = []
    for record, row in zip(result.records, rows, strict=True):
        value = row[name]["apfd"]
        if value is None:
            continue
        recent.append(value)
        if len(recent) > window:
            recent.pop(0)
        points.append((record.index, sum(recent) / len(recent)))
    return points


# --- what served the riskrank rows ------------------------------------------


def stretches(records: Sequence[BuildRecord]) -> list[dict[str, Any]]:
    """The scored builds in runs served by one model version (None: the
    heuristic), in build order."""
    runs: list[dict[str, Any]] = []
    for record in records:
        if runs and runs[-1]["version"] == record.model_version:
            runs[-1]["builds"] += 1
            runs[-1]["last_build_index"] = record.index
            runs[-1]["last_build"] = record.build
            continue
        runs.append(
            {
                "served_by": "heuristic" if record.model_version is None else "model",
                "version": record.model_version,
                "builds": 1,
                "first_build_index": record.index,
                "first_build": record.build,
                "last_build_index": record.index,
                "last_build": record.build,
            }
        )
    return runs


def _server(version: int | None, scorers: Mapping[int, str | None]) -> str:
    if version is None:
        return "the heuristic"
    scorer = scorers.get(version)
    return f"model v{version}" + (f" ({scorer})" if scorer else "")


def _builds(count: int) -> str:
    return f"{count} scored build" + ("" if count == 1 else "s")


def served_phrase(
    runs: Sequence[dict[str, Any]], total: int, scorers: Mapping[int, str | None] | None = None
) -> str:
    """Who scored the builds, in order, with what each model scores with
    (`scorers`, by version, where known): "the heuristic served the first
    32 of 412 scored builds, model v2 (additive model) the last 380"."""
    scorers = scorers or {}
    if not runs:
        return "no build was scored"
    if len(runs) == 1:
        who = _server(runs[0]["version"], scorers)
        return (
            f"{who} served the only scored build"
            if total == 1
            else (f"{who} served all {_builds(total)}")
        )
    first = _server(runs[0]["version"], scorers)
    parts = [f"{first} served the first {runs[0]['builds']} of {_builds(total)}"]
    parts += [f"{_server(run['version'], scorers)} the next {run['builds']}" for run in runs[1:-1]]
    parts.append(f"{_server(runs[-1]['version'], scorers)} the last {runs[-1]['builds']}")
    return ", ".join(parts)


def _reasons(trainings: Sequence[TrainingRecord]) -> str:
    """The distinct reasons, with how many trainings gave each when they
    differ. A reason's figures (after its first colon: each training quotes
    its own interval) are left out when several trainings share its words."""
    counts: dict[str, int] = {}
    for training in trainings:
        counts[training.reason] = counts.get(training.reason, 0) + 1
    if len(counts) == 1:
        return next(iter(counts))
    words: dict[str, int] = {}
    for reason, count in counts.items():
        head = reason.split(": ", 1)[0]
        words[head] = words.get(head, 0) + count
    if len(words) == 1:
        return next(iter(words))
    if len(words) < len(counts):
        counts = words
    return ", ".join(f"{reason}: {count}" for reason, count in counts.items())


def trainings_phrase(trainings: Sequence[TrainingRecord], retrain_every: int) -> str:
    """What became of the retrainings: "3 trainings, all refused (not ahead
    of the heuristic)" or "3 trainings: 1 promoted (v2 before build b25), 2
    refused (…)"."""
    if not trainings:
        return "no training (--retrain-every 0)" if retrain_every == 0 else "no training"
    by: dict[str, list[TrainingRecord]] = {kind: [] for kind in OUTCOMES}
    for training in trainings:
        by[training.outcome].append(training)

    def detail(kind: str) -> str:
        group = by[kind]
        if kind == PROMOTED:
            return ", ".join(f"v{t.version} before build {t.build}" for t in group)
        return _reasons(group)

    total = len(trainings)
    counted = f"{total} training" + ("" if total == 1 else "s")
    kinds = [kind for kind in OUTCOMES if by[kind]]
    if len(kinds) == 1:
        (kind,) = kinds
        label = "could not train" if kind == NOT_TRAINED else kind
        every = (
            label if total == 1 else ("none " + label if kind == NOT_TRAINED else f"all {label}")
        )
        return f"{counted}, {every} ({detail(kind)})"
    return counted + ": " + ", ".join(f"{len(by[k])} {k} ({detail(k)})" for k in kinds)


def served(result: BacktestResult) -> dict[str, Any]:
    """What scored the riskrank rows' builds (a model, which version, or the
    heuristic) and what became of every training, with the sentence the
    command and the report print."""
    runs = stretches(result.records)
    total = len(result.records)
    models: dict[int, int] = {}
    for record in result.records:
        if record.model_version is not None:
            models[record.model_version] = models.get(record.model_version, 0) + 1
    heuristic = total - sum(models.values())
    scorers = {t.version: t.scorer for t in result.trainings if t.version is not None}
    text = served_phrase(runs, total, scorers)
    if total and heuristic == total:
        text = "no model: " + text
    text += "; " + trainings_phrase(result.trainings, result.config.retrain_every)
    return {
        "scored_builds": total,
        "heuristic_builds": heuristic,
        "model_builds": [
            {"version": v, "builds": n, "scorer": scorers.get(v)} for v, n in sorted(models.items())
        ],
        "only_heuristic": heuristic == total,
        "stretches": runs,
        "trainings": {
            "total": len(result.trainings),
            **{
                kind.replace(" ", "_"): sum(1 for t in result.trainings if t.outcome == kind)
                for kind in OUTCOMES
            },
        },
        "text": f"{RISKRANK} rows: {text}.",
    }


def orderings_jsonl(result: BacktestResult) -> list[dict[str, Any]]:
    """One object per evaluated build: riskrank's order and selection."""
    return [
        {
            "build": record.build,
            "order": [record.names[i] for i in record.orders[RISKRANK].tolist()],
            "selected": [
                record.names[i]
                for i in record.orders[RISKRANK].tolist()
                if bool(record.selected[i])
            ],
        }
        for record in result.records
    ]


def to_json(
    result: BacktestResult, dataset: dict[str, Any], *, started_at: str | None = None
) -> dict[str, Any]:
    """Every figure of a backtest, with its run time, dataset and parameters."""
    rows = {view: per_build(result, view) for view in VIEWS}
    figs = figures(result, rows)
    failing = {
        view: sum(1 for r in result.records if view_failures(r, view).any()) for view in VIEWS
    }
    return {
        "dataset": {
            **dataset,
            "builds": result.builds,
            "evaluated_builds": len(result.records),
            "failing_builds": failing,
            "executions_ingested": result.executions,
        },
        "parameters": result.config.as_json(),
        "started_at": started_at,
        "seconds": round(result.seconds, 3),
        "seconds_by_step": result.seconds_by_step,
        "builds_per_second": round(result.builds / result.seconds, 3) if result.seconds else None,
        "orderings": orderings(result),
        "measures": list(MEASURES),
        "figures": figs,
        "strongest_baseline": {
            view: {m: strongest_baseline(figs[view], m)[0] for m in MEASURES} for view in VIEWS
        },
        "paired": paired_comparison(rows, figs),
        "half": {
            "half": result.config.half,
            "scored_builds": len(result.records),
            "evaluated_builds": result.evaluated,
            "first_build": result.records[0].build if result.records else None,
            "last_build": result.records[-1].build if result.records else None,
            "text": half_text(result),
        },
        "selection": selection(result),
        "calibration": calibration_figures(result),
        "trimming": trimming_figures(result),
        "trainings": [t.as_json() for t in result.trainings],
        "learning_curve": learning_curve(result, rows["all"]),
        "models_used": sorted(
            {r.model_version for r in result.records if r.model_version is not None}
        ),
        "heuristic_builds": sum(1 for r in result.records if r.model_version is None),
        "served": served(result),
    }
