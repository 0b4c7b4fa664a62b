"""riskrank backtest: what riskrank would have done on a CI history."""

from __future__ import annotations

import enum
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from scheduler.cli.common import By, HistoryFormat, Mode, console, fail, progress

# `riskrank --help` imports every command module: the backtest (numpy,
# LightGBM, and matplotlib for the report) is imported only when it runs.


class Half(enum.StrEnum):
    """scheduler.backtest.runner.HALVES."""

    ALL = "all"
    FIRST = "first"
    SECOND = "second"


# The measures the summary table prints (the JSON has every one).
TABLE = ("apfd", "apfdc", "napfd_50", "recall_tests_33", "recall_time_33", "first_failure")


def backtest(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="History file (.gz allowed).")
    ],
    fmt: Annotated[
        HistoryFormat,
        typer.Option(
            "--format", help="The file's format: jsonl, retecs (RETECS/COLEMAN CSV) or auto."
        ),
    ] = HistoryFormat.AUTO,
    warmup: Annotated[
        int, typer.Option(min=0, help="Builds ingested before the first evaluated one.")
    ] = 50,
    retrain_every: Annotated[
        int, typer.Option(min=0, help="Retrain every N evaluated builds (0: never).")
    ] = 50,
    mode: Annotated[Mode, typer.Option(help="The policy's mode.")] = Mode.ORDER,
    budget: Annotated[
        float | None, typer.Option(help="The mode's budget (seconds, or a share 0..1).")
    ] = None,
    by: Annotated[
        By,
        typer.Option(
            help="What the budget counts, and so the order: tests (by probability) or "
            "duration (probability per second; a fraction of the duration)."
        ),
    ] = By.TESTS,
    closed_loop: Annotated[
        bool,
        typer.Option(
            help="Learn only from the selected tests' outcomes (with exploration and full runs)."
        ),
    ] = False,
    miss_ceiling: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Closed loop: the share of failures trimming may let through before it "
            "escalates (default: the mode's promise, 0.1 for fraction and time; 1: never).",
        ),
    ] = None,
    calibration_ceiling: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Closed loop: the calibration error of the probabilities plans served above "
            "which trimming escalates (default: 0.02; 1: never).",
        ),
    ] = None,
    expand_after: Annotated[
        int,
        typer.Option(
            min=0,
            help="Run every test the budget dropped once at least this many of the selected "
            "tests that had passed fail in the build, more than their probabilities make "
            "likely (0: never); paid out of the budget, as a plan does.",
        ),
    ] = 2,
    exploration_seed: Annotated[
        int,
        typer.Option(
            min=0,
            help="Closed loop: which exploration samples the plans draw (0: the documented "
            "figures'); its figures move by points on one explored failure more or less, so "
            "run a few.",
        ),
    ] = 0,
    database: Annotated[
        str | None,
        typer.Option(
            help="Database URL to replay into, migrated if need be; the repository it adds "
            "(backtest/run-…) stays there. Default: a temporary SQLite file, deleted after."
        ),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json-out", metavar="FILE", dir_okay=False, help="Write every figure as JSON to FILE."
        ),
    ] = None,
    orderings: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False, help="Write riskrank's order and selection per build (JSONL)."
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(dir_okay=False, help="Write a self-contained HTML report.")
    ] = None,
    half: Annotated[
        Half,
        typer.Option(
            help="Score the first or second half of the builds after the warm-up, or all: "
            "design choices are made on the first half, figures reported on the second."
        ),
    ] = Half.ALL,
    jobs_apart: Annotated[
        bool,
        typer.Option(
            help="Keep a test's history per CI job (the history's `job`, a RETECS `Variant`): "
            "the same test in two jobs is two tests. Default: a build's jobs merge into one "
            "outcome per test, as riskrank's service keeps them today."
        ),
    ] = False,
) -> None:
    """Replay a CI history build by build through riskrank (ingestion,
    training and the registry, scoring, the policy) beside simple baselines,
    and print how early each ordering finds the failures."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

    from scheduler.backtest import summary
    from scheduler.backtest.runner import BacktestConfig, BacktestError, run_backtest
    from scheduler.cli.history import read_reports
    from scheduler.ingest.history import detect_format
    from scheduler.planning.policy import Policy

    config = BacktestConfig(
        warmup=warmup,
        retrain_every=retrain_every,
        policy=Policy(mode=mode.value, budget=budget, by=by.value, expand_after=expand_after),
        closed_loop=closed_loop,
        miss_ceiling=miss_ceiling,
        calibration_ceiling=calibration_ceiling,
        database_url=database,
        half=half.value,
        exploration_seed=exploration_seed,
        jobs_apart=jobs_apart,
    )
    try:
        config = config.checked()
    except BacktestError as error:
        fail(str(error))
    reports = read_reports(file, fmt.value)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    with progress(
        TextColumn("[bold]backtest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("builds · {task.fields[rate]:,.1f} builds/s"),
        label="backtest",
        unit="builds",
    ) as bar:
        task = bar.add_task("backtest", total=None, rate=0.0)

        def advance(done: int, total: int) -> None:
            elapsed = max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=done, total=total, rate=done / elapsed)

        try:
            result = run_backtest(reports, config, progress=advance)
        except BacktestError as error:
            fail(str(error))
    dataset = {
        "file": str(file),
        "name": dataset_name(file),
        "format": detect_format(file) if fmt is HistoryFormat.AUTO else fmt.value,
    }
    document = summary.to_json(result, dataset, started_at=started_at)
    print_summary(document)
    if json_out is not None:
        write_text(json_out, json.dumps(document, indent=2) + "\n")
    if orderings is not None:
        lines = summary.orderings_jsonl(result)
        write_text(orderings, "".join(json.dumps(line) + "\n" for line in lines))
    if report is not None:
        from scheduler.backtest import report as html  # matplotlib is slow to import

        write_text(report, html.render(result, document))


def dataset_name(file: Path) -> str:
    """The dataset's name: the file's name without .gz/.csv/.jsonl, or its
    folder's for the datasets' generic file names."""
    name = file.name
    for suffix in (".gz", ".csv", ".jsonl"):
        name = name.removesuffix(suffix)
    if name in ("features-engineered", "data-variants"):
        return file.parent.name
    return name


def write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        fail(f"cannot write {path}: {error.strerror or error}")
    console.print(f"wrote {path}", markup=False)


def print_summary(document: dict[str, Any]) -> None:
    from scheduler.backtest import summary
    from scheduler.backtest.runner import OPTIMAL, RISKRANK

    data = document["dataset"]
    console.print(
        f"{data['name']}: {data['evaluated_builds']} of {data['builds']} builds evaluated "
        f"in {document['seconds']:.1f} s ({document['builds_per_second']} builds/s); "
        f"failing builds: {data['failing_builds']['all']} (status changes: "
        f"{data['failing_builds']['changes']})",
        highlight=False,
        markup=False,
    )
    for view in summary.VIEWS:
        title = "all failures" if view == "all" else "status changes only"
        table = Table(title=f"{title}: means over failing builds")
        table.add_column("ordering")
        for measure in TABLE:
            table.add_column(measure, justify="right")
        best = document["strongest_baseline"][view]
        for name in document["orderings"]:
            row = document["figures"][view][name]
            cells = []
            for measure in TABLE:
                text = summary.cell(row[measure]["mean"], measure)
                if best[measure] == name:
                    text += "*"
                cells.append(text)
            style = "bold" if name == RISKRANK else ("dim" if name == OPTIMAL else None)
            table.add_row(name, *cells, style=style)
        paired = document["paired"][view]
        table.add_row(
            "vs strongest",
            *(summary.paired_cell(paired[m], "\n") if m in paired else "" for m in TABLE),
            end_section=False,
        )
        console.print(table)
    console.print(
        "* the strongest baseline per column; optimal is an upper bound. vs strongest: "
        "riskrank minus the strongest simple ordering per build, its mean, bootstrap 95% "
        "interval, wins/losses/ties, and the verdict (ahead only when the interval is above 0)",
        style="dim",
    )
    console.print(document["half"]["text"], highlight=False, markup=False)
    print_selection(document)
    # Whether a model or the heuristic made the riskrank rows changes what
    # they mean: say it under the tables, where the eye leaves them.
    served = document["served"]
    console.print(
        served["text"],
        style="bold yellow" if served["only_heuristic"] else "bold",
        highlight=False,
        markup=False,
    )


def print_selection(document: dict[str, Any]) -> None:
    """What the plans kept, what they said they dropped, and whether their
    probabilities held (the reliability table by decile), over the scored
    builds and, when both halves were scored, over the second half."""
    print_held(document["calibration"], "scored builds")
    second = document["calibration"].get("second_half")
    if document["parameters"].get("half") == "all" and second:
        print_held(second, "second half")
    print_trimming(document["trimming"])


def print_trimming(trimming: dict[str, Any]) -> None:
    """The tests run by source and, closed loop, the live estimate of what
    trimming missed against the true share, per window of builds."""

    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    by = trimming["selected_share_by"]
    console.print(
        "tests run by source: "
        + ", ".join(f"{source.replace('_', ' ')} {share(by[source])}" for source in by)
        + f"; builds escalated: {trimming['escalated_builds']}"
        + f", expanded: {trimming.get('expanded_builds', 0)}",
        highlight=False,
        markup=False,
    )
    rules = trimming.get("budget_share_by_rule") or {}
    if rules:
        console.print(
            "of the budget's: "
            + ", ".join(
                f"{'priority order' if rule == 'model' else rule.replace('_', ' ')} {share(value)}"
                for rule, value in rules.items()
            ),
            highlight=False,
            markup=False,
        )
    if not trimming["windows"]:
        return
    table = Table(
        title=f"live estimate of the failures missed, per {trimming['window']} builds: "
        f"within ±{trimming['tolerance']:.0%} of the true share in "
        f"{share(trimming['windows_within_tolerance'])} of the windows, the true share in "
        f"the 95% interval in {share(trimming['windows_true_in_interval'])}"
    )
    for name in ("builds", "failures", "true", "estimated", "95% interval", "explored", "esc."):
        table.add_column(name, justify="right")
    for window in trimming["windows"]:
        table.add_row(
            f"{window['first_build']}..{window['last_build']}",
            str(window["failures"]),
            share(window["true_miss_rate"]),
            share(window["estimated_miss_rate"]),
            f"{share(window['low'])}..{share(window['high'])}",
            str(window["explored_failures"]),
            str(window["escalated_builds"]),
        )
    console.print(table)


def scorer_clause(name: str, part: dict[str, Any]) -> str:
    """One scorer's calibration error, as the line after the miss risk says it."""
    from scheduler.backtest import summary

    if name != summary.UNSERVED:
        return f"; {name} plans ({part['builds']} builds): calibration error {part['ece']:.4f}"
    return (
        f"; the newest refused model ({len(part['versions'])} in turn), had it served the "
        f"heuristic's {part['builds']} builds: calibration error {part['ece']:.4f}"
        f" (mean predicted {part['mean_predicted']:.4f}, observed {part['observed_rate']:.4f})"
    )


def build_kinds_sentence(kinds: dict[str, dict[str, Any]]) -> str:
    """Per kind of build, the failures expected beside those that came, and
    in the trimmed builds the failures stated dropped beside those dropped."""
    parts = []
    for kind, part in kinds.items():
        text = (
            f"{kind} ({part['builds']} build{'s' if part['builds'] != 1 else ''}): "
            f"{part['expected']:.1f} failures expected, "
            f"{part['failures']} came"
        )
        if kind == "trimmed":
            text += (
                f", {part['stated_dropped']:.1f} stated among the dropped tests, "
                f"{part['dropped']} dropped"
            )
        parts.append(text)
    return "by what the plans did: " + "; ".join(parts)


def print_held(held: dict[str, Any], label: str) -> None:
    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    table_data = held.get("reliability")
    if not table_data:
        return
    console.print(
        f"{label} ({held['builds']} builds, {held['first_build']} to {held['last_build']}): "
        f"plans ran {share(held['tests_share'])} of the tests and kept "
        f"{share(held['failures_kept_per_failing_build'])} of the failures per failing build "
        f"({held['failing_builds']}), {share(held['failures_kept_share'])} of all "
        f"{held['failures']} failures. Miss risk per build: stated "
        f"{held['expected_failures_dropped']:.3f} expected failures dropped, dropped "
        f"{held['failures_dropped']:.3f}; stated chance of dropping one "
        f"{share(held['probability_any_dropped'])}, builds that did "
        f"{share(held['builds_with_a_failure_dropped'])}; builds that dropped at most the "
        f"stated 95% bound {share(held['builds_within_bound'])} (of those that dropped a test "
        f"{share(held.get('trimmed_builds_within_bound'))})"
        + "".join(
            scorer_clause(name, part)
            for name, part in (held.get("by_scorer") or {}).items()
            if part.get("ece") is not None
        ),
        highlight=False,
        markup=False,
    )
    kinds = held.get("by_build") or {}
    if set(kinds) - {"ran all"}:
        console.print(build_kinds_sentence(kinds), highlight=False, markup=False)
    table = Table(
        title=f"{label}, reliability: expected calibration error {table_data['ece']:.4f} "
        f"(mean predicted {held['mean_predicted']:.4f}, observed {held['observed_rate']:.4f})"
    )
    for name in ("decile", "tests", "mean predicted", "observed"):
        table.add_column(name, justify="right")
    rows = zip(table_data["rows"], table_data["predicted"], table_data["observed"], strict=True)
    for decile, (count, predicted, observed) in enumerate(rows, start=1):
        table.add_row(str(decile), f"{count:,}", f"{predicted:.4f}", f"{observed:.4f}")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(backtest)
