"""The admin CLI, run as users run it: the installed `riskrank` command."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from scheduler import migrate
from scheduler.db import Database
from tests.e2e.conftest import RISKRANK, clean_env


def riskrank(*arguments: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the command; without RISKRANK_DATA_DIR in `env`, the embedded
    default's files go to `cwd` (a test's own directory), never to the
    developer's ~/.local/share/riskrank."""
    return subprocess.run(
        [RISKRANK, *arguments],
        env={"RISKRANK_DATA_DIR": str(cwd), **env, "COLUMNS": "200"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version(tmp_path: Path) -> None:
    result = riskrank("--version", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == "riskrank 0.1.0"


def test_commands_refuse_an_unmigrated_database_and_upgrade_fixes_it(tmp_path: Path) -> None:
    env = clean_env()  # the embedded default: riskrank.db in the data directory, here
    (tmp_path / "riskrank.db").touch()  # a file, but no schema
    refused = riskrank("repo", "list", env=env, cwd=tmp_path)
    assert refused.returncode == 1
    assert "the database is at revision none" in refused.stderr
    assert "run `riskrank db upgrade`" in refused.stderr

    upgraded = riskrank("db", "upgrade", env=env, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"database at revision {migrate.head()}" in upgraded.stdout
    assert (tmp_path / "riskrank.db").exists()
    current = riskrank("db", "current", env=env, cwd=tmp_path)
    assert f"current: {migrate.head()}" in current.stdout

    listed = riskrank("repo", "list", "--json", env=env, cwd=tmp_path)
    assert listed.returncode == 0
    assert json.loads(listed.stdout) == []


def test_repo_add_prints_a_secret_once_and_list_shows_it(
    db_url: str, database: Database, tmp_path: Path
) -> None:
    env = clean_env(RISKRANK_DATABASE_URL=db_url)
    added = riskrank("repo", "add", "Octo/Hello-World", env=env, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "registered github repository Octo/Hello-World" in added.stdout
    assert re.search(r"webhook secret: [0-9a-f]{64}\b", added.stdout)
    assert "/webhooks/github" in added.stdout

    again = riskrank("repo", "add", "octo/hello-world", env=env, cwd=tmp_path)
    assert again.returncode == 1
    assert "already registered" in again.stderr

    given = riskrank(
        "repo",
        "add",
        "group/sub/project",
        "--provider",
        "gitlab",
        env=env,
        cwd=tmp_path,
    )
    assert given.returncode == 0, given.stderr

    listed = riskrank("repo", "list", "--json", env=env, cwd=tmp_path)
    rows = json.loads(listed.stdout)
    assert [(row["provider"], row["repository"], row["secret"]) for row in rows] == [
        ("github", "Octo/Hello-World", True),
        ("gitlab", "group/sub/project", True),
    ]
    table = riskrank("repo", "list", env=env, cwd=tmp_path)
    assert "Octo/Hello-World" in table.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["repo", "add", "no-slash"], "is not OWNER/NAME"),
        (["repo", "add", "o/r", "--secret", "short"], "at least 16 characters"),
        (["repo", "add", "o/r", "--provider", "svn"], "Invalid value"),
    ],
)
def test_bad_repo_arguments_are_explained(
    db_url: str, database: Database, tmp_path: Path, arguments: list[str], message: str
) -> None:
    result = riskrank(*arguments, env=clean_env(RISKRANK_DATABASE_URL=db_url), cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr


def test_production_refuses_the_embedded_defaults(tmp_path: Path) -> None:
    result = riskrank(
        "repo", "list", env=clean_env(RISKRANK_ENVIRONMENT="production"), cwd=tmp_path
    )
    assert result.returncode == 1
    assert "RISKRANK_DATABASE_URL" in result.stderr


def test_a_gitlab_secret_is_printed_once_and_kept_as_a_hash(
    db_url: str, database: Database, tmp_path: Path
) -> None:
    from scheduler.ingest.payload import secret_matches
    from scheduler.models import Provider
    from scheduler.services import repos

    env = clean_env(RISKRANK_DATABASE_URL=db_url)
    added = riskrank("repo", "add", "group/app", "--provider", "gitlab", env=env, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    found = re.search(r"webhook secret: ([0-9a-f]{64})\b", added.stdout)
    assert found
    secret = found.group(1)

    def stored() -> tuple[str | None, str | None]:
        with database.session() as session:
            repository = repos.find_repository(
                session, provider=Provider.GITLAB, full_name="group/app"
            )
            assert repository is not None
            return repository.webhook_secret, repository.webhook_secret_hash

    clear, hashed = stored()
    assert clear is None
    assert hashed is not None
    assert secret_matches(secret, hashed)
    digest = hashed.rpartition("$")[2]
    for listing in (["repo", "list"], ["repo", "list", "--json"]):
        shown = riskrank(*listing, env=env, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert "group/app" in shown.stdout
        assert secret not in shown.stdout
        assert digest not in shown.stdout

    # A new one, given: not echoed; the old one no longer matches.
    given = "a-new-gitlab-secret-0123456789"
    rotated = riskrank("repo", "secret", "group/app", "--secret", given, env=env, cwd=tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    assert given not in rotated.stdout
    _, hashed = stored()
    assert hashed is not None
    assert secret_matches(given, hashed)
    assert not secret_matches(secret, hashed)

    # A new one, made: printed once.
    made = riskrank("repo", "secret", "group/app", env=env, cwd=tmp_path)
    found = re.search(r"webhook secret: ([0-9a-f]{64})\b", made.stdout)
    assert found
    _, hashed = stored()
    assert hashed is not None
    assert secret_matches(found.group(1), hashed)

    short = riskrank("repo", "secret", "group/app", "--secret", "short", env=env, cwd=tmp_path)
    assert short.returncode == 1
    assert "at least 16 characters" in short.stderr
