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
