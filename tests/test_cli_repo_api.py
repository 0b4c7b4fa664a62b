"""`riskrank repo api`: the provider token, API URL and artifact names a
repository's results are pulled with; the token is stored, never shown."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sqlalchemy import select

from scheduler.db import Database
from scheduler.models import Repository
from tests.e2e.conftest import RISKRANK, clean_env
from tests.test_cli import riskrank

TOKEN = "ghp_PullTokenForTests0123456789abcdef"


def stored(tmp_path: Path) -> tuple[str | None, str | None, str | None]:
    database = Database.from_url(f"sqlite:///{tmp_path / 'riskrank.db'}")
    try:
        with database.session() as session:
            row = session.execute(
                select(
                    Repository.provider_token,
                    Repository.provider_api_url,
                    Repository.artifact_pattern,
                )
            ).one()
            return row[0], row[1], row[2]
    finally:
        database.dispose()


def test_token_url_and_pattern_are_set_shown_without_the_token_and_reset(
    tmp_path: Path,
) -> None:
    env = clean_env()
    assert riskrank("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    assert riskrank("repo", "add", "acme/app", env=env, cwd=tmp_path).returncode == 0

    shown = riskrank(
        "repo", "api", "acme/app", "--api-url", "http://127.0.0.1:9999/",
        "--artifacts", "JUnit-*, reports",
        env={**env, "RISKRANK_PROVIDER_TOKEN": TOKEN}, cwd=tmp_path,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert TOKEN not in shown.stdout + shown.stderr
    assert "set" in shown.stdout
    assert stored(tmp_path) == (TOKEN, "http://127.0.0.1:9999", "junit-*,reports")

    # From standard input, out of the shell's history.
    piped = subprocess.run(
        [RISKRANK, "repo", "api", "acme/app", "--token-stdin"],
        input="glpat-other-token\n",
        env={"RISKRANK_DATA_DIR": str(tmp_path), **env, "COLUMNS": "200"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    assert "glpat-other-token" not in piped.stdout
    assert stored(tmp_path)[0] == "glpat-other-token"

    refused = riskrank("repo", "api", "acme/app", "--api-url", "ftp://x", env=env, cwd=tmp_path)
    assert refused.returncode != 0
    assert "not an http(s) URL" in refused.stderr

    reset = riskrank(
        "repo", "api", "acme/app", "--clear-token", "--api-url", "", "--artifacts", "",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert reset.returncode == 0, reset.stderr
    assert "https://api.github.com" in reset.stdout
    assert "missing" in reset.stdout
    assert stored(tmp_path) == (None, None, None)


def test_generic_repositories_have_nothing_to_pull_from(tmp_path: Path) -> None:
    env = clean_env()
    assert riskrank("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    added = riskrank("repo", "add", "ci/app", "--provider", "generic", env=env, cwd=tmp_path)
    assert added.returncode == 0
    refused = riskrank(
        "repo", "api", "ci/app", env={**env, "RISKRANK_PROVIDER_TOKEN": TOKEN}, cwd=tmp_path
    )
    assert refused.returncode != 0
    assert "GitHub and GitLab only" in refused.stderr
    assert TOKEN not in refused.stdout + refused.stderr


SIGNING = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="


def test_a_gitlab_signing_token_and_commit_statuses_are_set_and_unset(tmp_path: Path) -> None:
    env = clean_env()
    assert riskrank("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    added = riskrank("repo", "add", "group/app", "--provider", "gitlab", env=env, cwd=tmp_path)
    assert added.returncode == 0, added.stderr

    def settings() -> tuple[str | None, bool]:
        database = Database.from_url(f"sqlite:///{tmp_path / 'riskrank.db'}")
        try:
            with database.session() as session:
                row = session.execute(
                    select(Repository.webhook_signing_token, Repository.commit_status)
                ).one()
                return row[0], row[1]
        finally:
            database.dispose()

    assert settings() == (None, False)
    shown = riskrank(
        "repo", "api", "group/app", "--commit-status",
        env={**env, "RISKRANK_GITLAB_SIGNING_TOKEN": SIGNING}, cwd=tmp_path,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert SIGNING not in shown.stdout + shown.stderr
    rows = [line.split("│") for line in shown.stdout.splitlines() if line.count("│") == 3]
    lines = {row[1].strip(): row[2].strip() for row in rows}
    assert (lines["signing token"], lines["commit status"]) == ("set", "on")
    assert settings() == (SIGNING, True)

    refused = riskrank(
        "repo", "api", "group/app", "--signing-token", "not-a-token", env=env, cwd=tmp_path
    )
    assert refused.returncode != 0
    assert "whsec_ followed by the base64 of its key" in refused.stderr

    reset = riskrank(
        "repo", "api", "group/app", "--clear-signing-token", "--no-commit-status",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert reset.returncode == 0, reset.stderr
    assert settings() == (None, False)
