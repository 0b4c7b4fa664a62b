"""A backtest as one self-contained HTML page: the plots are matplotlib PNGs
embedded as base64, so the file can be mailed or attached to a CI run."""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any, TypeAlias

import matplotlib

matplotlib.use("Agg")  # no display: render to memory

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure

from scheduler.backtest import summary
from scheduler.backtest.runner import (
    OPTIMAL,
    RANDOM,
    RISKRANK,
    RISKRANK_BY_PROBABILITY,
    BacktestResult,
)
from scheduler.evaluation import metrics

Flags: TypeAlias = npt.NDArray[np.bool_]
Floats: TypeAlias = npt.NDArray[np.float64]

SHARE_GRID = tuple(round(x, 2) for x in np.linspace(0.05, 1.0, 20))
ROLLING_WINDOW = 50  # failing builds


def _recalls(ranked: Flags, durations: Floats, time: bool) -> Floats:
    """Recall at every share of SHARE_GRID for one order (`ranked`: failing
    flags in run order): `metrics.recall_at_tests` and `recall_at_time`,
    computed from one cumulative sum (tests/backtest checks they agree)."""
    found = np.cumsum(ranked)
    m = float(found[-1])
    if time:
        elapsed = np.cumsum(durations)
        total = math.fsum(durations.tolist())
        limits = np.array(SHARE_GRID) * total + metrics.BUDGET_SLACK * total
        counts = np.searchsorted(elapsed, limits, side="right")
    else:
        counts = np.array([metrics.count_in_budget(len(ranked), s) for s in SHARE_GRID])
    caught = np.where(counts > 0, found[np.maximum(counts - 1, 0)], 0)
    result: Floats = caught / m
    return result


def recall_curve(
    result: BacktestResult, name: str, view: str, *, time: bool = False
) -> list[float]:
    """Mean recall of the failing tests at each share of SHARE_GRID (of the
    tests, or of the time), over the builds with a failure in the view."""
    sums = np.zeros(len(SHARE_GRID))
    count = 0
    for record in result.records:
        failed = summary.view_failures(record, view)
        if not failed.any():
            continue
        if name == OPTIMAL:
            orders = [metrics.optimal_order(failed, record.durations)]
        elif name == RANDOM:
            orders = [o for k, o in record.orders.items() if k.startswith(RANDOM + "/")]
        else:
            orders = [record.orders[name]]
        values = np.zeros(len(SHARE_GRID))
        for order in orders:
            values += _recalls(failed[order], record.durations[order], time)
        sums += values / len(orders)
        count += 1
    return (sums / count).tolist() if count else [0.0] * len(SHARE_GRID)


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _style(name: str) -> dict[str, Any]:
    if name == RISKRANK:
        return {"linewidth": 2.5, "color": "black"}
    if name == OPTIMAL:
        return {"linestyle": ":", "color": "grey"}
    if name == RISKRANK_BY_PROBABILITY:
        return {"linewidth": 1.5, "color": "black", "linestyle": "--"}
    return {"linewidth": 1.0}


def recall_plot(result: BacktestResult, names: list[str]) -> str:
    figure, axes = plt.subplots(2, 2, figsize=(12, 9), sharey=True)
    for row, view in enumerate(summary.VIEWS):
        for column, time in enumerate((False, True)):
            ax = axes[row][column]
            for name in names:
                ax.plot(
                    SHARE_GRID,
                    recall_curve(result, name, view, time=time),
                    label=name,
                    **_style(name),
                )
            ax.set_xlabel("share of the " + ("time" if time else "tests") + " run")
            ax.set_ylabel("mean recall of failing tests")
            ax.set_title(
                ("all failures" if view == "all" else "status changes")
                + ", by "
                + ("time" if time else "tests")
            )
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return _png(figure)


def apfd_plot(result: BacktestResult, document: dict[str, Any]) -> str:
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, view in zip(axes, summary.VIEWS, strict=True):
        rows = summary.per_build(result, view)
        best = document["strongest_baseline"][view]["apfd"]
        for name in dict.fromkeys([RISKRANK, RISKRANK_BY_PROBABILITY, best, OPTIMAL]):
            if not name or (result.records and name not in (OPTIMAL, *result.records[0].orders)):
                continue
            points = summary.rolling_apfd(result, rows, name, ROLLING_WINDOW)
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, label=name, **_style(name))
        for training in result.trainings:
            if training.promoted:
                ax.axvline(training.index, color="green", alpha=0.15)
        ax.set_xlabel("build")
        ax.set_ylabel(f"APFD, mean of the last {ROLLING_WINDOW} failing builds")
        ax.set_title("all failures" if view == "all" else "status changes")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a view without failures draws no line
            ax.legend(fontsize=8)
    return _png(figure)


def _view_title(view: str) -> str:
    return "all failures" if view == "all" else "status changes"


def paired_plot(result: BacktestResult, document: dict[str, Any]) -> str:
    """Per view: the paired intervals of every measure (a forest plot), and
    the distribution of the per-build APFD differences."""
    figure, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    for column, view in enumerate(summary.VIEWS):
        entries = document["paired"][view]
        measures = [m for m in summary.PAIRED_MEASURES if entries[m]["verdict"] is not None]
        ax = axes[0][column]
        for y, measure in enumerate(measures):
            entry = entries[measure]
            color = {"ahead": "green", "behind": "red"}.get(entry["verdict"], "grey")
            ax.plot([entry["low"], entry["high"]], [y, y], color=color, linewidth=2)
            ax.plot([entry["mean_difference"]], [y], "o", color=color)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(measures)), measures)
        ax.invert_yaxis()
        ax.set_xlabel("riskrank minus the strongest simple ordering: mean, 95% interval")
        ax.set_title(_view_title(view))
        ax.grid(alpha=0.3)
        ax = axes[1][column]
        strongest = entries["apfd"]["strongest"]
        if strongest is not None:
            rows = summary.per_build(result, view)
            # Log scale: the many tied builds would flatten the wins and losses.
            ax.hist(summary.differences(rows, "apfd", strongest), bins=40, color="grey", log=True)
            ax.axvline(0.0, color="black", linewidth=0.8)
            ax.set_title(f"{_view_title(view)}: APFD per build,\nriskrank minus {strongest}")
        ax.set_xlabel("difference in APFD")
        ax.set_ylabel("builds (log scale)")
        ax.grid(alpha=0.3)
    figure.tight_layout()
    return _png(figure)


def paired_table(document: dict[str, Any]) -> str:
    """riskrank against the strongest simple ordering, per measure and view."""
    head = "".join(
        f'<th colspan="4">{html.escape(_view_title(view))}</th>' for view in summary.VIEWS
    )
    sub = "<th>strongest</th><th>difference [95% interval]</th><th>W/L/T</th><th>verdict</th>"
    rows = []
    for measure in summary.PAIRED_MEASURES:
        cells = []
        for view in summary.VIEWS:
            entry = document["paired"][view][measure]
            if entry["verdict"] is None:
                cells.append("<td>-</td><td>-</td><td>-</td><td>no failing build</td>")
                continue
            cells.append(
                f"<td>{html.escape(entry['strongest'])}</td>"
                f"<td>{entry['mean_difference']:+.4f} [{entry['low']:+.4f}, "
                f"{entry['high']:+.4f}]</td>"
                f"<td>{entry['wins']}/{entry['losses']}/{entry['ties']}</td>"
                f'<td class="{entry["verdict"]}">{entry["verdict"]}</td>'
            )
        rows.append(f"<tr><th>{measure}</th>{''.join(cells)}</tr>")
    return (
        f"<table><tr><th></th>{head}</tr><tr><th>measure</th>{sub * len(summary.VIEWS)}</tr>"
        f"{''.join(rows)}</table>"
    )


def learning_plot(document: dict[str, Any]) -> str | None:
    curve = document["learning_curve"]
    if not curve:
        return None
    figure, ax = plt.subplots(figsize=(12, 4.5))
    xs = [point["build_index"] for point in curve]

    def series(key: str) -> list[float]:
        return [np.nan if p[key] is None else p[key] for p in curve]

    ax.plot(xs, series("apfd"), marker="o", label="riskrank, builds until the next training")
    best = document["strongest_baseline"]["all"]["apfd"]
    ax.plot(
        xs,
        [
            np.nan if p["baselines_apfd"].get(best) is None else p["baselines_apfd"][best]
            for p in curve
        ],
        marker=".",
        label=f"{best}, same builds",
    )
    ax.plot(xs, series("validation_apfd"), linestyle="--", label="candidate, validation builds")
    ax.plot(xs, series("heuristic_apfd"), linestyle=":", label="heuristic, validation builds")
    for point in curve:
        if point["promoted"]:
            ax.annotate(
                f"v{point['version']}",
                (point["build_index"], 0),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                color="green",
            )
    ax.set_xlabel("build of the retraining")
    ax.set_ylabel("mean APFD (all failures)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(figure)


def _text(value: Any) -> str:
    """A parameter's value as a reader types it: lists joined, None as none."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(round(value, 4))
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) if value else "none"
    return str(value)


def flat(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested settings as (dotted name, value) rows: policy.mode, …"""
    rows: list[tuple[str, Any]] = []
    for name, value in values.items():
        if isinstance(value, dict):
            rows += flat(value, f"{prefix}{name}.")
        else:
            rows.append((f"{prefix}{name}", value))
    return rows


def pairs_table(rows: list[tuple[str, Any]], head: tuple[str, str]) -> str:
    """A two-column table, every name and value escaped."""
    body = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(_text(value))}</td></tr>"
        for name, value in rows
    )
    return (
        f'<table class="pairs"><tr><th>{html.escape(head[0])}</th>'
        f"<th>{html.escape(head[1])}</th></tr>{body}</table>"
    )


def _apfd(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def trainings_table(trainings: list[dict[str, Any]]) -> str:
    """Every retraining: before which build, what the registry decided and
    why, and the validation APFDs it compared."""
    head = (
        "build index",
        "before build",
        "outcome",
        "version",
        "scorer",
        "reason",
        "candidate APFD",
        "heuristic APFD",
        "active model APFD",
        "rows",
        "failures",
        "seconds",
    )
    rows = []
    for t in trainings:
        cells = (
            str(t["build_index"]),
            str(t["before_build"]),
            str(t["outcome"]),
            "-" if t["version"] is None else f"v{t['version']}",
            t.get("scorer") or "-",
            str(t["reason"]),
            _apfd(t["validation_apfd"]),
            _apfd(t["heuristic_apfd"]),
            _apfd(t["active_apfd"]),
            "-" if t["rows"] is None else str(t["rows"]),
            "-" if t["failures"] is None else str(t["failures"]),
            f"{t['seconds']:.1f}",
        )
        mark = f' class="{html.escape(str(t["outcome"]).replace(" ", "-"))}"'
        rows.append(f"<tr{mark}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    titles = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f'<table class="trainings"><tr>{titles}</tr>{"".join(rows)}</table>'


def figures_table(document: dict[str, Any], view: str) -> str:
    names = document["orderings"]
    best = document["strongest_baseline"][view]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for measure in document["measures"]:
        cells = []
        for name in names:
            entry = document["figures"][view][name][measure]
            text = summary.cell(entry["mean"], measure)
            if "mean_all" in entry and entry["mean_all"] is not None:
                text += f"<br><small>{entry['mean_all']:.4f}</small>"
            mark = ' class="best"' if best[measure] == name else ""
            cells.append(f"<td{mark}>{text}</td>")
        rows.append(f"<tr><th>{measure}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1300px; }
table { border-collapse: collapse; font-size: 12px; }
td, th { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
td.best { background: #eef; }
td.ahead { background: #efe; }
td.behind { background: #fee; }
table.pairs td, table.pairs th, table.trainings td { text-align: left; }
tr.promoted { background: #efe; }
p.served { font-weight: bold; }
p.served.heuristic { background: #ffd; padding: 4px; }
small { color: #888; }
"""


# Probabilities under this are drawn at it: the reliability plot's axes are
# logarithmic (most of a suite's probabilities are under 1%).
PROBABILITY_FLOOR = 1e-5


def reliability_plot(document: dict[str, Any]) -> str | None:
    """Per decile of the probability the plans served, the mean served
    against the failure rate observed, for the heuristic's builds, the
    model's, and the newest refused model's had it served the heuristic's;
    None where the plans carried no probability."""
    parts = (document.get("calibration") or {}).get("by_scorer") or {}
    drawn = {
        name: part
        for name, part in parts.items()
        if part.get("ece") is not None and part.get("reliability")
    }
    if not drawn:
        return None
    figure, ax = plt.subplots(figsize=(7, 6))
    ax.plot(
        [PROBABILITY_FLOOR, 1.0],
        [PROBABILITY_FLOOR, 1.0],
        color="grey",
        linestyle=":",
        label="calibrated",
    )
    for name, part in drawn.items():
        table = part["reliability"]
        label = (
            f"newest refused model, had it served ({part['builds']} builds)"
            if name == summary.UNSERVED
            else f"{name} plans ({part['builds']} builds)"
        )
        ax.plot(
            np.maximum(table["predicted"], PROBABILITY_FLOOR),
            np.maximum(table["observed"], PROBABILITY_FLOOR),
            marker="o",
            label=f"{label}: error {part['ece']:.4f}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"mean probability served, per decile (under {PROBABILITY_FLOOR:g} drawn at it)")
    ax.set_ylabel("failure rate observed (under the same floor drawn at it)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(figure)


def build_kinds_table(document: dict[str, Any]) -> str | None:
    """Per kind of build (summary.by_build), the failures the probabilities
    expected beside those that came, and in the trimmed builds the failures
    stated among the dropped tests beside those dropped; None where every
    build ran every test."""
    kinds = (document.get("calibration") or {}).get("by_build") or {}
    if not set(kinds) - {"ran all"}:
        return None
    head = ("builds", "failures expected", "failures that came", "stated dropped", "dropped")
    rows = "".join(
        f"<tr><th>{html.escape(kind)}</th><td>{part['builds']}</td>"
        f"<td>{part['expected']:.1f}</td><td>{part['failures']}</td>"
        f"<td>{part['stated_dropped']:.1f}</td><td>{part['dropped']}</td></tr>"
        for kind, part in kinds.items()
    )
    return (
        '<table class="pairs"><tr><th>what the plan did</th>'
        + "".join(f"<th>{html.escape(name)}</th>" for name in head)
        + f"</tr>{rows}</table>"
    )


def render(result: BacktestResult, document: dict[str, Any]) -> str:
    """The page: what ran and how long it took, then the plots and tables."""
    data = document["dataset"]
    names = list(document["orderings"])
    # Which model (or the heuristic) served sits beside every results table:
    # a heuristic's figures read as a model's would mislead.
    kind = "served heuristic" if document["served"]["only_heuristic"] else "served"
    served = f'<p class="{kind}">{html.escape(document["served"]["text"])}</p>'
    parts = [
        f"<h1>riskrank backtest: {html.escape(str(data['name']))}</h1>",
        "<p>"
        f"{data['evaluated_builds']} of {data['builds']} builds evaluated "
        f"({data['failing_builds']['all']} failing, {data['failing_builds']['changes']} "
        f"with a status change); the backtest took <b>{document['seconds']:.1f} s</b> "
        f"({document['builds_per_second']} builds/s), started {document['started_at']}.</p>",
        served,
        f"<p>{html.escape(document['half']['text'])}</p>",
        "<h2>Parameters</h2>",
        pairs_table(
            [
                ("history file", data.get("file")),
                ("history format", data.get("format")),
                *flat(document["parameters"]),
            ],
            ("parameter", "value"),
        ),
        "<h2>What the plans kept</h2>",
        pairs_table(flat(document["selection"]), ("figure", "value")),
        "<h2>Recall against budget</h2>",
        f'<img src="data:image/png;base64,{recall_plot(result, names)}">',
        "<h2>APFD over time</h2>",
        f'<img src="data:image/png;base64,{apfd_plot(result, document)}">',
    ]
    learning = learning_plot(document)
    if learning is not None:
        parts += [
            "<h2>Learning curve</h2>",
            f'<img src="data:image/png;base64,{learning}">',
        ]
    reliability = reliability_plot(document)
    if reliability is not None:
        parts += [
            "<h2>Calibration</h2>",
            "<p>Whether the probabilities the plans carried came true: per decile of the "
            "probability served (every test of the scored builds), the mean served against "
            "the share that failed; on the dotted line, a probability means what it says. "
            "Where the heuristic served, the newest model the registry refused is scored "
            "too, as if it had served (its training's map, refreshed as a serving "
            "model's is).</p>",
            f'<img src="data:image/png;base64,{reliability}">',
        ]
    kinds = build_kinds_table(document)
    if kinds is not None:
        parts += [
            "<p>By what the plans did with each build: failures come together, so the "
            "builds that expanded (tens of tests breaking at once) hold more failures than "
            "their probabilities said and the trimmed builds fewer; the miss risk stated "
            "among the dropped tests counts them before any expansion.</p>",
            kinds,
        ]
    for view in summary.VIEWS:
        title = "All failures" if view == "all" else "Status changes only"
        parts += [
            f"<h2>{title}</h2>",
            "<p>Means over the failing builds; below, small: over all builds with "
            "failure-free builds counted as 1 (COLEMAN). Shaded: the strongest baseline.</p>",
            served,
            figures_table(document, view),
        ]
    parts += [
        "<h2>Against the strongest simple ordering</h2>",
        "<p>Per build, riskrank's value minus that of the simple ordering with the best "
        "mean on the measure (random and the optimal order left out); the mean of those "
        "differences, its bootstrap 95% interval (10,000 resamples of the builds), the "
        "builds riskrank won, lost and tied, and the verdict: ahead only when the "
        "interval is above 0, behind when it is below, a tie otherwise.</p>",
        served,
        paired_table(document),
        f'<img src="data:image/png;base64,{paired_plot(result, document)}">',
        "<h2>Trainings</h2>",
        "<p>Each retraining trains a candidate on the history so far; the registry "
        "promotes it only if it is ahead of the active model (or the heuristic while no "
        "model is active) on held-out builds neither was trained on: the paired 95% "
        "interval of its per-build APFD lead is above 0. An active model the heuristic "
        "is ahead of, on the builds since its own training, is retired: the heuristic "
        "serves until a candidate is ahead of it.</p>",
        trainings_table(document["trainings"])
        if document["trainings"]
        else "<p>No retraining (--retrain-every 0).</p>",
    ]
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>riskrank backtest: {html.escape(str(data['name']))}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>\n"
    )
