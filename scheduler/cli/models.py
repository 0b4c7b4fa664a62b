"""riskrank train | models: the model registry."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from scheduler.cli.common import (
    JsonFlag,
    ProviderOption,
    RepoArgument,
    console,
    fail,
    migrated_database,
    progress,
    settings,
)

if TYPE_CHECKING:
    from scheduler.models import RiskModel
    from scheduler.providers import Provider

app = typer.Typer(help="List, inspect, promote and roll back models.", no_args_is_help=True)

VersionArgument = Annotated[
    int, typer.Argument(metavar="VERSION", help="The model's version, from `riskrank models list`.")
]


def _figure(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _repository_id(full_name: str, provider: Provider | None) -> int:
    from scheduler.services import repos

    database = migrated_database(settings())
    with database.session() as session:
        try:
            return repos.resolve_repository(session, full_name=full_name, provider=provider).id
        except repos.RepositoryError as error:
            fail(str(error))


def train(
    full_name: RepoArgument, provider: ProviderOption = None, as_json: JsonFlag = False
) -> None:
    """Train a model on the repository's history now; it becomes the active
    model only if it is ahead of the active one (or the heuristic) on held-out
    builds neither was trained on: the lower bound of the paired 95% interval
    of its per-build APFD lead above 0. An active model that the heuristic is
    ahead of, on the builds since its training, is retired."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn

    # LightGBM comes with training: only this command and the model views load it.
    from scheduler.services import training

    repository_id = _repository_id(full_name, provider)
    database = migrated_database(settings())
    with progress(
        SpinnerColumn(),
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps · {task.description}"),
        label="training",
        unit="steps",
    ) as bar:
        task = bar.add_task("starting", total=training.STEPS)
        told = 0

        def step(what: str) -> None:
            nonlocal told
            # The steps before this one are done.
            bar.update(task, completed=min(told, training.STEPS), description=escape(what))
            told += 1

        try:
            with database.session() as session:
                outcome = training.train_repository(
                    session, repository_id=repository_id, progress=step
                )
                if outcome is None:
                    fail("another training of this repository is running")
                result = training.summary(outcome.model) | {
                    "promoted": outcome.promoted,
                    "reason": outcome.reason,
                    "compared": outcome.model.metrics,
                }
        except training.TrainingError as error:
            fail(str(error))
        bar.update(task, completed=training.STEPS, description=f"model v{result['version']}")
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    state = "[green]active[/]" if result["promoted"] else "kept as a candidate"
    console.print(
        f"model v{result['version']}: {state} ({result['reason']}); "
        f"{result['rows']:,} rows, {result['failures']:,} failing",
        highlight=False,
    )
    _comparison(result["compared"], decision=False)  # the line above says it


def _build(key: str) -> str:
    """A build as the history names it (the registry's key leads with the
    commit's row id)."""
    return key.split("/", 1)[-1]


def _lead(comparison: dict[str, Any] | None) -> str:
    """The candidate's lead and interval, for the table of models."""
    if not comparison or comparison.get("mean_difference") is None:
        return "-"
    return (
        f"{comparison['mean_difference']:+.3f} "
        f"[{comparison['low']:+.3f}, {comparison['high']:+.3f}] ({comparison['builds']})"
    )


def _interval(metrics: dict[str, Any], *, decision: bool) -> None:
    """The paired comparison that decided the promotion, when the model has one."""
    from scheduler.services.training import interval_phrase

    found = metrics.get("comparison")
    if not found:
        return
    against = (
        "the heuristic"
        if found.get("against") == "heuristic"
        else f"the active model v{found.get('against_version')}"
    )
    compared = (metrics.get("ranges") or {}).get("compared")
    where = (
        f", {_build(compared['first_build'])} to {_build(compared['last_build'])}"
        if compared
        else ""
    )
    console.print(
        f"APFD against {against}, per held-out build{where}: {interval_phrase(found)} "
        f"({found['confidence']:.0%} bootstrap interval; {found['wins']} won, "
        f"{found['losses']} lost, {found['ties']} tied)",
        highlight=False,
    )
    if decision:
        console.print(f"decision: {metrics.get('decision')}", highlight=False)


def _choice(metrics: dict[str, Any]) -> None:
    """What was trained, and the candidates it was chosen among."""
    scorer = metrics.get("scorer")
    if not scorer:
        return
    console.print(f"scorer: {scorer['name']} ({scorer['description']})", highlight=False)
    picked = metrics.get("choice") or {}
    trials = picked.get("trials") or []
    if not trials:
        console.print(
            "chosen by default: no failing build to choose on before the held-out ones",
            highlight=False,
        )
        return
    scored = picked.get("scored_builds") or {}
    table = Table(
        f"candidates, trained on the builds before #{scored.get('first_index')}",
        f"APFD on #{scored.get('first_index')}-#{scored.get('last_index')}",
        "failing builds",
        "seconds",
    )
    for trial in trials:
        mark = " (chosen)" if trial["name"] == picked.get("chosen") else ""
        table.add_row(
            trial["name"] + mark,
            _figure(trial["mean_apfd"]) if trial["error"] is None else trial["error"],
            str(trial["failing_builds"]),
            f"{trial['seconds']:.1f}",
        )
    for name in picked.get("skipped") or []:
        table.add_row(name, "not tried: the time budget was spent", "-", "-")
    console.print(table)


def _tie(metrics: dict[str, Any]) -> None:
    """How plans order tests of equal score after this training."""
    tie = metrics.get("tie")
    if not tie:
        return
    means = tie.get("mean_apfd") or {}
    rule = "the younger first" if tie["younger_first"] else "in the order first seen"
    console.print(
        f"equal scores: {rule} (the heuristic's mean APFD over {tie['failing_builds']} failing "
        f"builds: younger first {_figure(means.get('younger first'))}, order first seen "
        f"{_figure(means.get('first seen first'))})",
        highlight=False,
    )


def _comparison(metrics: dict[str, Any], *, decision: bool = True) -> None:
    _choice(metrics)
    _tie(metrics)
    _interval(metrics, decision=decision)
    table = Table("on the held-out builds", "APFD", "recall@20%", "recall@33%", "AUC", "log loss")
    compared = metrics.get("comparison") or {}
    active = "active model"
    if compared.get("against_version") is not None:
        active += f" v{compared['against_version']}"
    if compared.get("active_retired"):
        active += " (retired by this training)"
    rows: list[tuple[str, dict[str, Any] | None]] = [
        ("this model", metrics.get("candidate")),
        (active, metrics.get("active")),
    ]
    heuristics: dict[str, Any] = metrics.get("heuristics") or {
        "heuristic": metrics.get("heuristic")
    }
    best = metrics.get("best_heuristic")
    rows += [
        (f"{name} (best)" if name == best else name, figures)
        for name, figures in heuristics.items()
    ]
    for label, figures in rows:
        if figures:
            table.add_row(
                label,
                *(
                    _figure(figures.get(name))
                    for name in (
                        "mean_apfd",
                        "mean_recall_at_20",
                        "mean_recall_at_33",
                        "auc",
                        "log_loss",
                    )
                ),
            )
    console.print(table)


@app.command("list")
def list_(
    full_name: RepoArgument, provider: ProviderOption = None, as_json: JsonFlag = False
) -> None:
    """The repository's models, newest first."""
    from scheduler.services import training

    repository_id = _repository_id(full_name, provider)
    with migrated_database(settings()).session() as session:
        rows = [
            training.summary(record)
            for record in training.list_models(session, repository_id=repository_id)
        ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(
        "version",
        "status",
        "scorer",
        "trained (UTC)",
        "rows",
        "failing",
        "APFD",
        "recall@33%",
        "AUC",
        "APFD lead [95% interval] (builds)",
    )
    for row in rows:
        table.add_row(
            str(row["version"]),
            row["status"],
            row["scorer"] or "-",
            row["created_at"][:16].replace("T", " "),
            f"{row['rows']:,}",
            f"{row['failures']:,}",
            _figure(row["apfd"]),
            _figure(row["recall_at_33"]),
            _figure(row["auc"]),
            _lead(row["comparison"]),
        )
    console.print(table)


@app.command()
def show(
    full_name: RepoArgument,
    version: Annotated[
        int | None,
        typer.Argument(
            metavar="VERSION",
            help="The model's version (default: the active model, or the newest when none is "
            "active).",
        ),
    ] = None,
    provider: ProviderOption = None,
    as_json: JsonFlag = False,
) -> None:
    """One model: its figures beside the active model's and the heuristic's,
    and its feature importances."""
    from scheduler.services import training

    repository_id = _repository_id(full_name, provider)
    with migrated_database(settings()).session() as session:
        try:
            record: RiskModel | None = (
                training.get_model(session, repository_id=repository_id, version=version)
                if version is not None
                else training.active_model(session, repository_id)
            )
        except training.RegistryError as error:
            fail(str(error))
        if record is None:
            # None active (none promoted yet, or the active one retired): the
            # newest says why, in its decision.
            newest = training.list_models(session, repository_id=repository_id)
            if not newest:
                fail("no model yet: run `riskrank train`")
            record = newest[0]
        result = training.summary(record) | {
            "params": record.params,
            "metrics": record.metrics,
            "feature_names": record.feature_names,
        }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console.print(
        f"model v{result['version']} ({result['status']}), trained {result['created_at']}"
    )
    _comparison(result["metrics"])
    for label, key in (("calibration", "calibration"), ("heuristic", "heuristic_calibration")):
        console.print(_calibration_line(label, result[key]))
    importance = sorted(
        (result["metrics"].get("importance") or {}).items(), key=lambda item: -item[1]
    )
    table = Table("feature", "importance (gain)")
    for name, value in importance:
        table.add_row(name, f"{value:,.1f}")
    console.print(table)


def _calibration_line(label: str, stored: dict[str, Any] | None) -> str:
    """How a scorer's scores are made probabilities, and how well that held."""
    if stored is None:
        return f"{label}: none (scores served as they are)"
    ece = stored.get("ece")
    held = "not measured" if ece is None else f"{ece:.4f}"
    return (
        f"{label}: {stored.get('method')}, expected calibration error {held} "
        f"(learnt on {stored.get('builds')} held-out builds, {stored.get('rows'):,} rows, "
        f"{stored.get('failures'):,} failures; the error on the newer half, fit on the older)"
    )


@app.command()
def promote(
    full_name: RepoArgument,
    version: VersionArgument,
    provider: ProviderOption = None,
) -> None:
    """Make VERSION the active model (the one before it is retired)."""
    from scheduler.services import training

    repository_id = _repository_id(full_name, provider)
    try:
        with migrated_database(settings()).session() as session:
            training.promote(session, repository_id=repository_id, version=version)
    except training.RegistryError as error:
        fail(str(error))
    console.print(f"model v{version} is active")


@app.command()
def rollback(full_name: RepoArgument, provider: ProviderOption = None) -> None:
    """Go back to the model that was active before the current one."""
    from scheduler.services import training

    repository_id = _repository_id(full_name, provider)
    try:
        with migrated_database(settings()).session() as session:
            record = training.rollback(session, repository_id=repository_id)
            version = record.version
    except training.RegistryError as error:
        fail(str(error))
    console.print(f"model v{version} is active again")
