"""riskrank repo: the repositories riskrank watches."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from scheduler.cli.common import (
    JsonFlag,
    ProviderOption,
    RepoArgument,
    Setting,
    choices,
    console,
    fail,
    migrated_database,
    setting_assignment,
    settings,
)
from scheduler.providers import Provider

app = typer.Typer(
    help="Register, list and show repositories; their secrets, pulls and plan policy.",
    no_args_is_help=True,
)


@app.command("add")
def add(
    full_name: RepoArgument,
    provider: Annotated[Provider, typer.Option(help="Where the repository lives.")] = (
        Provider.GITHUB
    ),
    secret: Annotated[
        str | None,
        typer.Option(
            help="Webhook secret to use (at least 16 characters); one is made if omitted.",
            envvar="RISKRANK_WEBHOOK_SECRET",
        ),
    ] = None,
) -> None:
    """Register a repository and print the webhook secret to give the provider."""
    from scheduler.services import repos

    config = settings()
    database = migrated_database(config)
    # Made here, not by the service: for GitLab only its hash is stored.
    webhook_secret = secret or repos.new_webhook_secret()
    try:
        with database.session() as session:
            repository = repos.add_repository(
                session, provider=provider, full_name=full_name, webhook_secret=webhook_secret
            )
            name = repository.full_name
    except repos.RepositoryError as error:
        fail(str(error))
    console.print(f"registered {provider.value} repository [bold]{name}[/]")
    if secret is None:
        # Printed once: it is the only time riskrank shows it.
        console.print(f"webhook secret: [bold]{webhook_secret}[/]", highlight=False)
    console.print(
        f"payload URL: http://<this host>:{config.port}/webhooks/{provider.value}",
        highlight=False,
    )


@app.command("secret")
def secret_(
    full_name: RepoArgument,
    provider: ProviderOption = None,
    secret: Annotated[
        str | None,
        typer.Option(
            help="The new webhook secret (at least 16 characters); one is made if omitted.",
            envvar="RISKRANK_WEBHOOK_SECRET",
        ),
    ] = None,
) -> None:
    """Replace a repository's webhook secret (a leak, a rotation, or a GitLab
    secret to set again: riskrank keeps only its hash) and print the new one
    to give the provider. Deliveries signed with the old one are refused
    (by each API process within RISKRANK_WEBHOOK_SECRET_CACHE_SECONDS)."""
    from scheduler.services import repos

    database = migrated_database(settings())
    webhook_secret = secret or repos.new_webhook_secret()
    try:
        with database.session() as session:
            repository = repos.resolve_repository(session, full_name=full_name, provider=provider)
            repos.set_webhook_secret(repository, webhook_secret)
            name, kind = repository.full_name, repository.provider.value
    except repos.RepositoryError as error:
        fail(str(error))
    console.print(f"new webhook secret set for {kind} repository [bold]{name}[/]")
    if secret is None:
        # Printed once: it is the only time riskrank shows it.
        console.print(f"webhook secret: [bold]{webhook_secret}[/]", highlight=False)


@app.command("api")
def api(
    full_name: RepoArgument,
    provider: ProviderOption = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="The provider API token riskrank pulls results with (GitHub: actions:read; "
            "GitLab: read_api). Prefer RISKRANK_PROVIDER_TOKEN or --token-stdin: a token on "
            "the command line stays in the shell's history.",
            envvar="RISKRANK_PROVIDER_TOKEN",
            show_envvar=True,
        ),
    ] = None,
    token_stdin: Annotated[
        bool, typer.Option("--token-stdin", help="Read the token from standard input.")
    ] = False,
    clear_token: Annotated[
        bool, typer.Option("--clear-token", help="Forget the token: results are not pulled.")
    ] = False,
    api_url: Annotated[
        str | None,
        typer.Option(
            help="The provider API's base URL (GitHub Enterprise, a self-managed GitLab); "
            "'' for the default (https://api.github.com, https://gitlab.com/api/v4)."
        ),
    ] = None,
    artifacts: Annotated[
        str | None,
        typer.Option(
            metavar="GLOBS",
            help="Comma-separated globs of the artifact names to pull (case-insensitive; "
            "GitLab, when a pipeline has no test report: of the job names, else of the file "
            "paths in the jobs' artifacts); '' for the default.",
        ),
    ] = None,
    signing_token: Annotated[
        str | None,
        typer.Option(
            help="GitLab: the webhook's signing token (whsec_...); deliveries must then "
            "carry its webhook-signature. Prefer RISKRANK_GITLAB_SIGNING_TOKEN.",
            envvar="RISKRANK_GITLAB_SIGNING_TOKEN",
            show_envvar=True,
        ),
    ] = None,
    clear_signing_token: Annotated[
        bool, typer.Option("--clear-signing-token", help="Forget the GitLab signing token.")
    ] = False,
    commit_status: Annotated[
        bool | None,
        typer.Option(
            "--commit-status/--no-commit-status",
            help="Post a commit status with each plan and its outcome (off by default; "
            "GitHub: statuses:write, GitLab: api).",
        ),
    ] = None,
) -> None:
    """Set how riskrank pulls a repository's test results from its CI (no
    upload step in the pipeline), and show it. The token is never shown."""
    from scheduler.services import provider_access, repos

    if token_stdin:
        token = typer.get_text_stream("stdin").read().strip()
    database = migrated_database(settings())
    try:
        with database.session() as session:
            repository = repos.resolve_repository(session, full_name=full_name, provider=provider)
            provider_access.update_access(
                repository,
                token=token,
                clear_token=clear_token,
                api_url=api_url,
                artifact_pattern=artifacts,
                signing_token=signing_token,
                clear_signing_token=clear_signing_token,
                commit_status=commit_status,
            )
            access = provider_access.access_of(repository)
            signed = repository.webhook_signing_token is not None
    except repos.RepositoryError as error:
        fail(str(error))
    table = Table("setting", "value")
    table.add_row("repository", f"{access.provider.value} {escape(access.full_name)}")
    table.add_row("token", "set" if access.token else "[red]missing[/] (results are not pulled)")
    table.add_row("API URL", escape(access.api_url))
    table.add_row("artifacts", escape(", ".join(access.patterns)))
    if access.provider is Provider.GITLAB:
        table.add_row("signing token", "set" if signed else "unset")
    table.add_row("commit status", "on" if access.commit_status else "off")
    console.print(table)


@app.command("list")
def list_(
    as_json: JsonFlag = False,
) -> None:
    """List registered repositories with what riskrank has seen of them."""
    from scheduler.services import repos

    database = migrated_database(settings())
    with database.session() as session:
        summaries = repos.list_repositories(session)
    if as_json:
        rows = [
            {
                "provider": summary.provider.value,
                "repository": summary.full_name,
                "secret": summary.has_secret,
                "events": summary.events,
                "commits": summary.commits,
                "last_event_at": summary.last_event_at.isoformat()
                if summary.last_event_at
                else None,
            }
            for summary in summaries
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("provider")
    table.add_column("repository", no_wrap=True)
    for column in ("secret", "events", "commits", "last event (UTC)"):
        table.add_column(column, overflow="fold")
    for summary in summaries:
        table.add_row(
            summary.provider.value,
            summary.full_name,
            "set" if summary.has_secret else "[red]missing[/]",
            str(summary.events),
            str(summary.commits),
            summary.last_event_at.strftime("%Y-%m-%d %H:%M") if summary.last_event_at else "-",
        )
    console.print(table)


@app.command("status")
def status(
    full_name: RepoArgument,
    provider: ProviderOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Whether trimming keeps its promise: the live estimate of the share of
    failures it lets through (from the exploration sample, over the newest
    evaluated plans), whether it is escalated and why, and the calibration
    error of the probabilities plans carry."""
    from scheduler.services import repos, trimming

    database = migrated_database(settings())
    with database.session() as session:
        try:
            repository = repos.resolve_repository(session, full_name=full_name, provider=provider)
        except repos.RepositoryError as error:
            fail(str(error))
        found = trimming.status_of(session, repository)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    model = found["model_version"]
    ece = found["calibration_error"]
    console.print(
        f"{escape(found['repository'])}: "
        + (f"model v{model}" if model is not None else "no model (heuristic plans)")
        + (f", calibration error {ece:.4f}" if ece is not None else ", not calibrated yet"),
        highlight=False,
    )
    console.print(escape(found["text"]), highlight=False)
    if found["escalation"]:
        console.print(f"[bold yellow]escalated:[/] {escape(found['escalation'])}", highlight=False)


SET_HELP = (
    "Set a policy setting; VALUE is JSON or plain text (mode=fraction, budget=0.3, "
    f"must_run='[\"tests/smoke/*\"]'). Repeatable. KEY is one of: {', '.join(Setting)}."
)


@app.command("settings")
def settings_(
    full_name: RepoArgument,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            parser=setting_assignment,
            help=SET_HELP,
        ),
    ] = None,
    unset: Annotated[
        list[Setting] | None,
        typer.Option("--unset", metavar=choices(Setting), help="Back to the default. Repeatable."),
    ] = None,
    provider: ProviderOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Show or change a repository's plan policy: what CI gets when it asks
    for a plan without parameters, and the rules every plan keeps."""
    from scheduler.services import repo_settings, repos

    database = migrated_database(settings())
    try:
        changes = dict(repo_settings.parse_assignment(text) for text in set_ or [])
        with database.session() as session:
            if changes or unset:
                stored = repo_settings.update_settings(
                    session,
                    full_name=full_name,
                    changes=changes,
                    unset=[key.value for key in unset or []],
                    provider=provider,
                )
            else:
                stored = dict(
                    repos.resolve_repository(
                        session, full_name=full_name, provider=provider
                    ).settings
                )
            effective = repo_settings.effective_policy(stored)
    except (repo_settings.SettingsError, repos.RepositoryError) as error:
        fail(str(error))
    if as_json:
        typer.echo(json.dumps({"settings": stored, "policy": effective}, indent=2))
        return
    table = Table("setting", "value", "source")
    for key, value in effective.items():
        source = "repository" if key in stored else "default"
        shown = (
            ", ".join(value) if isinstance(value, list) else "-" if value is None else str(value)
        )
        table.add_row(key, escape(shown), source)
    console.print(table)


@app.command("show")
def show(
    full_name: RepoArgument, provider: ProviderOption = None, as_json: JsonFlag = False
) -> None:
    """One repository: its provider and default branch, whether results are
    pulled, its last event and results, its active model and its quality,
    its last training, and how much riskrank holds of it."""
    from scheduler.services import overview, provider_access, repos

    with migrated_database(settings()).session() as session:
        try:
            repository = repos.resolve_repository(session, full_name=full_name, provider=provider)
        except repos.RepositoryError as error:
            fail(str(error))
        seen = overview.repository_overview(session, repository)
        access = provider_access.access_of(repository)
        document = seen.as_json() | {
            "webhook_secret": repos.has_webhook_secret(repository),
            "pulls_results": access.token is not None,
            "settings": dict(repository.settings),
        }
    if as_json:
        typer.echo(json.dumps(document, indent=2))
        return
    table = Table(show_header=False)
    table.add_row("repository", f"{document['provider']} {escape(document['repository'])}")
    table.add_row("default branch", escape(document["default_branch"] or "-"))
    table.add_row("webhook secret", "set" if document["webhook_secret"] else "[red]missing[/]")
    table.add_row("results pulled", "yes" if document["pulls_results"] else "no (uploaded by CI)")
    event, results = document["last_event"], document["last_results"]
    table.add_row(
        "last event (UTC)",
        f"{_when(event['received_at'])} {escape(event['event'])} ({event['status']})"
        if event
        else "none",
    )
    table.add_row(
        "last results (UTC)",
        f"{_when(results['received_at'])} ({results['status']}, {results['tests']:,} tests)"
        if results
        else "none",
    )
    model = document["active_model"]
    table.add_row(
        "active model",
        f"v{model['version']}: APFD {_figure(model['apfd'])}, AUC {_figure(model['auc'])}, "
        f"log loss {_figure(model['log_loss'])} (on held-out builds)"
        if model
        else "none: plans use the heuristic",
    )
    trained = document["last_training"]
    table.add_row(
        "last training (UTC)",
        f"{_when(trained['created_at'])}: v{trained['version']} ({trained['status']})"
        if trained
        else "never",
    )
    for key, value in document["counts"].items():
        table.add_row(key.replace("_", " "), f"{value:,}")
    table.add_row(
        "policy settings",
        escape(", ".join(f"{key}={value}" for key, value in document["settings"].items()))
        or "the defaults",
    )
    console.print(table)


def _when(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else "-"


def _figure(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"
