"""riskrank against the strongest baseline on every dataset of
../shared/datasets: one backtest each (`riskrank backtest`'s engine, same
defaults), a table per dataset, written to benchmarks/results/effectiveness.md.

    .venv/bin/python benchmarks/effectiveness.py [--only NAME ...] [--closed-loop 0.33] [--json F]

Each dataset is replayed open loop in mode `order` (everything runs, in
riskrank's order); `--closed-loop SHARE` adds a run where plans keep SHARE
of the tests and riskrank learns only from what they ran. The warm-up and
the retraining period are the backtest's defaults for every dataset. The
model's own settings (scheduler/risk/model.py) were chosen on dune-total's
first 1,530 builds, which this run evaluates too: the README gives dune-total's
held-out figure (`--warmup 1530`). For each measure the table gives
riskrank's mean over the failing builds, the strongest baseline's (the
optimal order is a bound, not a baseline), and which is ahead. The four
Apache Commons projects, whose failures are few, are also pooled: means
over all their failing builds together."""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scheduler.backtest import summary
from scheduler.backtest.runner import (
    RISKRANK,
    RISKRANK_BY_PROBABILITY,
    BacktestConfig,
    run_backtest,
)
from scheduler.ingest.history import read_history
from scheduler.planning.policy import Policy

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared/datasets"
RESULTS = ROOT / "benchmarks/results"
MEASURES = (
    "apfd",
    "apfdc",
    "napfd_10",
    "napfd_50",
    "recall_tests_20",
    "recall_tests_33",
    "recall_time_33",
    "caught_tests_33",
    "first_failure",
)
POOLED = "apache-commons (pooled)"


def datasets() -> list[tuple[str, Path]]:
    found = [
        (path.parent.name, path)
        for path in sorted(DATASETS.glob("dune-common/*/features-engineered.csv.gz"))
    ]
    found += [("druid", DATASETS / "druid/features-engineered.csv.gz")]
    found += [("abb-iofrol", DATASETS / "abb-iofrol/iofrol.csv.gz")]
    found += [
        (path.name.removesuffix(".jsonl.gz"), path)
        for path in sorted(DATASETS.glob("apache-commons/*.jsonl.gz"))
    ]
    return [(name, path) for name, path in found if path.exists()]


def backtest(name: str, path: Path, config: BacktestConfig) -> dict[str, Any]:
    started = time.perf_counter()
    result = run_backtest(read_history(path), config)
    document = summary.to_json(result, {"name": name, "file": str(path.relative_to(ROOT.parent))})
    print(
        f"{name}: {result.builds} builds, {len(result.records)} evaluated in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return document


def pooled(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the failing builds of several backtests together: each
    dataset's mean weighted by its number of failing builds."""
    views: dict[str, Any] = {}
    for view in summary.VIEWS:
        names = list(documents[0]["figures"][view])
        views[view] = {}
        for name in names:
            views[view][name] = {}
            for measure in summary.MEASURES:
                entries = [d["figures"][view][name][measure] for d in documents]
                builds = sum(e["builds"] for e in entries)
                total = sum(e["mean"] * e["builds"] for e in entries if e["mean"] is not None)
                views[view][name][measure] = {
                    "mean": total / builds if builds else None,
                    "builds": builds,
                }
    return {
        "dataset": {
            "name": POOLED,
            "builds": sum(d["dataset"]["builds"] for d in documents),
            "evaluated_builds": sum(d["dataset"]["evaluated_builds"] for d in documents),
            "failing_builds": {
                view: sum(d["dataset"]["failing_builds"][view] for d in documents)
                for view in summary.VIEWS
            },
        },
        "seconds": sum(d["seconds"] for d in documents),
        "figures": views,
        "selection": None,
    }


def _value(value: float | None, measure: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if measure == summary.FIRST_FAILURE else f"{value:.3f}"


def table(document: dict[str, Any], label: str) -> list[str]:
    data = document["dataset"]
    lines = [
        f"### {data['name']}{label}",
        "",
        f"{data['evaluated_builds']} of {data['builds']} builds evaluated; failing: "
        f"{data['failing_builds']['all']} (status changes: {data['failing_builds']['changes']}); "
        f"{document['seconds']:.0f} s.",
        "",
        "| measure | view | riskrank | by probability | strongest baseline | "
        "| riskrank - baseline |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    chosen = document.get("selection")
    if chosen and chosen.get("tests_share") is not None and chosen["tests_share"] < 1:
        lines[4:4] = [
            f"Plans kept {chosen['tests_share']:.1%} of the tests, {chosen['time_share']:.1%} of "
            f"the time; the kept tests held {_value(chosen['recall_all'], '')} of the failures "
            f"and {_value(chosen['recall_changes'], '')} of the status changes; a failure was "
            f"kept in {_value(chosen['caught_all'], '')} of the failing builds.",
            "",
        ]
    for view in summary.VIEWS:
        figures = document["figures"][view]
        for measure in MEASURES:
            mine = figures[RISKRANK][measure]["mean"]
            scores = figures[RISKRANK_BY_PROBABILITY][measure]["mean"]
            name, best = summary.strongest_baseline(figures, measure)
            if mine is None or best is None:
                verdict = "no failing build"
            else:
                delta = mine - best
                ahead = delta < 0 if summary.lower_is_better(measure) else delta > 0
                verdict = (
                    "**ahead** " if ahead else ("tied " if delta == 0 else "behind ")
                ) + f"({delta:+.3f})"
            lines.append(
                f"| {measure} | {view} | {_value(mine, measure)} | {_value(scores, measure)} | "
                f"{name} | "
                f"{_value(best, measure)} | {verdict} |"
            )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="dataset names to run (default: all)")
    parser.add_argument("--closed-loop", type=float, default=None, metavar="SHARE")
    parser.add_argument("--out", type=Path, default=RESULTS / "effectiveness.md")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    arguments = parser.parse_args()

    started = datetime.now(UTC)
    chosen = [(n, p) for n, p in datasets() if not arguments.only or n in arguments.only]
    runs: list[tuple[str, BacktestConfig]] = [("", BacktestConfig())]
    if arguments.closed_loop is not None:
        trimmed = Policy(mode="fraction", budget=arguments.closed_loop)
        runs.append(
            (
                f", closed loop, {arguments.closed_loop:.0%} of the tests",
                BacktestConfig(policy=trimmed, closed_loop=True),
            )
        )
    sections: list[str] = []
    documents: dict[str, list[dict[str, Any]]] = {}
    for label, config in runs:
        commons: list[dict[str, Any]] = []
        for name, path in chosen:
            document = backtest(name, path, config)
            documents.setdefault(label.lstrip(", ") or "open loop, mode order", []).append(document)
            sections += table(document, label)
            if name.startswith("commons-"):
                commons.append(document)
        if len(commons) > 1:
            sections += table(pooled(commons), label)
    command = "`.venv/bin/python benchmarks/effectiveness.py"
    if arguments.only:
        command += " --only " + " ".join(arguments.only)
    if arguments.closed_loop is not None:
        command += f" --closed-loop {arguments.closed_loop}"
    command += "`"
    defaults = BacktestConfig()
    header = [
        "# riskrank against the strongest baseline",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC with {command}; warm-up {defaults.warmup} builds, "
        f"retraining every {defaults.retrain_every}, mode order unless said. Means over the "
        "failing builds; `changes` counts only status changes (a test failing now that did "
        "not fail in its previous run, or is new). Baselines: original order, random "
        f"({defaults.random_seeds} seeds), recently failed first, failure rate, failure rate "
        "per second, shortest first. `riskrank` is the plan's order (by probability in mode "
        "order; per second of expected runtime with a time budget or by duration); "
        "`by probability` the same scores in probability order. "
        "first_failure: lower is better. The model's settings were chosen on dune-total's first "
        "1,530 builds, which these runs evaluate too; the README gives dune-total's held-out "
        "figure (`--warmup 1530`).",
        "",
    ]
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text("\n".join(header + sections), encoding="utf-8")
    print(f"wrote {arguments.out}")
    if arguments.json is not None:
        kept = ("dataset", "parameters", "seconds", "figures", "selection", "trainings")
        slim = {
            label: [{key: d.get(key) for key in kept} for d in runs_of]
            for label, runs_of in documents.items()
        }
        document = {"started": f"{started:%Y-%m-%d %H:%M} UTC", "runs": slim}
        arguments.json.write_text(json.dumps(document) + "\n", encoding="utf-8")
        print(f"wrote {arguments.json}")


if __name__ == "__main__":
    main()
