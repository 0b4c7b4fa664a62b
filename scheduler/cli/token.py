"""riskrank token: API tokens for CI jobs."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from scheduler.cli.common import (
    USAGE,
    JsonFlag,
    ProviderOption,
    Scope,
    choices,
    console,
    fail,
    migrated_database,
    scope_list,
    settings,
)

app = typer.Typer(help="Create, list and revoke API tokens for CI jobs.", no_args_is_help=True)

RepoArgument = Annotated[
    str | None,
    typer.Argument(
        metavar="OWNER/NAME",
        help="The repository; for GitLab its path with every group: GROUP/SUBGROUP/NAME.",
        show_default=False,
    ),
]
# How the repository was named before every command took it as OWNER/NAME:
# kept, hidden, for scripts.
RepoOption = Annotated[
    str | None, typer.Option("--repo", metavar="OWNER/NAME", hidden=True, help="The repository.")
]


def _repository(argument: str | None, option: str | None) -> str:
    if argument is not None and option is not None and argument != option:
        fail(f"two repositories given: {argument} and --repo {option}", USAGE)
    full_name = argument or option
    if full_name is None:
        fail("missing argument OWNER/NAME", USAGE)
    return full_name


@app.command()
def create(
    full_name: RepoArgument = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            parser=scope_list,
            metavar=choices(Scope),
            help="Scopes, comma-separated or the option repeated (default: both).",
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="A label to recognise the token by.")] = "ci",
    provider: ProviderOption = None,
    repo: RepoOption = None,
) -> None:
    """Make a token for one repository and print it (once: only its hash is kept)."""
    from scheduler.services import repos, tokens

    repo = _repository(full_name, repo)
    try:
        given = ",".join(scope) if scope else ",".join(s.value for s in tokens.DEFAULT_SCOPES)
        scopes = tokens.parse_scopes(given)
    except ValueError as error:
        fail(str(error))
    database = migrated_database(settings())
    try:
        with database.session() as session:
            repository = repos.resolve_repository(session, full_name=repo, provider=provider)
            new = tokens.create_token(session, repository=repository, scopes=scopes, name=name)
            full_name = repository.full_name
    except repos.RepositoryError as error:
        fail(str(error))
    console.print(
        f"token for {full_name} ({', '.join(s.value for s in scopes)}); "
        "store it as the CI secret RISKRANK_TOKEN, it is not shown again:",
        highlight=False,
    )
    typer.echo(f"token: {new.token}")


@app.command("list")
def list_(
    full_name: RepoArgument = None,
    provider: ProviderOption = None,
    as_json: JsonFlag = False,
    repo: RepoOption = None,
) -> None:
    """List a repository's tokens (never the tokens themselves)."""
    from scheduler.services import repos, tokens

    repo = _repository(full_name, repo)
    database = migrated_database(settings())
    try:
        with database.session() as session:
            repository = repos.resolve_repository(session, full_name=repo, provider=provider)
            summaries = tokens.list_tokens(session, repository=repository)
    except repos.RepositoryError as error:
        fail(str(error))
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "id": t.id,
                        "name": t.name,
                        "prefix": t.prefix,
                        "scopes": t.scopes,
                        "created_at": t.created_at.isoformat(),
                        "last_used_at": t.last_used_at and t.last_used_at.isoformat(),
                        "revoked": t.revoked_at is not None,
                    }
                    for t in summaries
                ],
                indent=2,
            )
        )
        return
    table = Table("id", "name", "starts with", "scopes", "last used (UTC)", "state")
    for t in summaries:
        table.add_row(
            str(t.id),
            t.name,
            t.prefix + "…",
            ", ".join(t.scopes),
            t.last_used_at.strftime("%Y-%m-%d %H:%M") if t.last_used_at else "never",
            "revoked" if t.revoked_at else "active",
        )
    console.print(table)


@app.command()
def revoke(
    first: Annotated[
        str,
        typer.Argument(
            metavar="OWNER/NAME",
            help="The repository; for GitLab its path with every group: GROUP/SUBGROUP/NAME.",
            show_default=False,
        ),
    ],
    second: Annotated[
        str | None,
        typer.Argument(metavar="ID", help="The token's id, from `riskrank token list`."),
    ] = None,
    provider: ProviderOption = None,
    repo: RepoOption = None,
) -> None:
    """Revoke a token: it stops working at once."""
    from scheduler.services import repos, tokens

    # The former spelling, `token revoke ID --repo OWNER/NAME`, still works.
    given_id = first if repo is not None and second is None else second
    repo = _repository(None if given_id is first else first, repo)
    if given_id is None or not given_id.isdigit():
        fail(f"the token's ID must be a number, from `riskrank token list`: {given_id}", USAGE)
    token_id = int(given_id)
    database = migrated_database(settings())
    try:
        with database.session() as session:
            repository = repos.resolve_repository(session, full_name=repo, provider=provider)
            found = tokens.revoke_token(session, repository=repository, token_id=token_id)
    except repos.RepositoryError as error:
        fail(str(error))
    if not found:
        fail(f"{repo} has no token {token_id}")
    console.print(f"token {token_id} revoked")
