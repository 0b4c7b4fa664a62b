"""`riskrank repo settings`: an operator's policy settings, checked when
they are set, and what plans then get."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scheduler.db import Database
from scheduler.models import Provider, Repository
from scheduler.services import repo_settings, repos
from tests.e2e.conftest import clean_env
from tests.test_cli import riskrank
from tests.test_cli_outcomes import unboxed


def test_settings_are_checked_stored_and_shown(tmp_path: Path) -> None:
    env = clean_env()
    assert riskrank("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    added = riskrank("repo", "add", "acme/app", env=env, cwd=tmp_path)
    assert added.returncode == 0, added.stderr

    changed = riskrank(
        "repo", "settings", "acme/app",
        "--set", "mode=fraction", "--set", "budget=0.3",
        "--set", 'must_run=["tests/smoke/*"]', "--json",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    shown = json.loads(changed.stdout)
    assert shown["settings"] == {"mode": "fraction", "budget": 0.3, "must_run": ["tests/smoke/*"]}
    assert shown["policy"]["mode"] == "fraction"
    assert shown["policy"]["budget"] == 0.3
    assert shown["policy"]["exploration_rate"] == 0.05  # a default
    assert "poetry.lock" in shown["policy"]["full_run_paths"]

    table = riskrank("repo", "settings", "acme/app", env=env, cwd=tmp_path)
    assert table.returncode == 0
    assert any(
        "must_run" in line and "tests/smoke/*" in line and "repository" in line
        for line in table.stdout.splitlines()
    )
    assert any(
        "exploration_rate" in line and "default" in line for line in table.stdout.splitlines()
    )

    reset = riskrank(
        "repo", "settings", "acme/app", "--unset", "budget", "--unset", "mode", "--json",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert json.loads(reset.stdout)["settings"] == {"must_run": ["tests/smoke/*"]}


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        (["--set", "budget=3"], 1, "a fraction budget is a share from 0 to 1, not 3.0"),
        (["--set", "exploration_rate=yes"], 1, "exploration_rate must be a number, not 'yes'"),
        (["--set", "recent_failures=1.5"], 1, "recent_failures must be a whole number"),
        (["--set", "must_run=tests/*"], 1, "must_run must be a list of globs"),
        (["--set", "calibration_ceiling=2"], 1, "calibration_ceiling is a share from 0 to 1"),
        (["--set", "miss_ceiling=-0.1"], 1, "miss_ceiling is a share from 0 to 1"),
        (["--set", "mode=sometimes"], 1, "mode"),
        # A key that is no setting is a usage error, as a wrong choice is.
        (["--set", "bugdet=0.2"], 2, "Invalid value for '--set': unknown setting 'bugdet'"),
        (["--set", "nothing"], 2, "Invalid value for '--set': 'nothing' is not KEY=VALUE"),
        (
            ["--unset", "colour"],
            2,
            "Invalid value for '--unset': Value error, 'colour' is not one of 'mode', 'budget',",
        ),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(
    tmp_path: Path, arguments: list[str], code: int, message: str
) -> None:
    env = clean_env()
    riskrank("db", "upgrade", env=env, cwd=tmp_path)
    riskrank("repo", "add", "acme/app", env=env, cwd=tmp_path)
    riskrank(
        "repo", "settings", "acme/app", "--set", "mode=fraction", "--set", "budget=0.5",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    refused = riskrank("repo", "settings", "acme/app", *arguments, env=env, cwd=tmp_path)
    assert refused.returncode == code
    assert message in unboxed(refused.stderr)
    kept = riskrank("repo", "settings", "acme/app", "--json", env=env, cwd=tmp_path)
    assert json.loads(kept.stdout)["settings"] == {"mode": "fraction", "budget": 0.5}


def test_an_unknown_repository_is_named(tmp_path: Path) -> None:
    env = clean_env()
    riskrank("db", "upgrade", env=env, cwd=tmp_path)
    refused = riskrank("repo", "settings", "nope/x", env=env, cwd=tmp_path)
    assert refused.returncode == 1
    assert "repository nope/x is not registered" in refused.stderr


def test_settings_are_stored_on_both_databases(database: Database) -> None:
    with database.session() as session:
        repos.add_repository(session, provider=Provider.GENERIC, full_name="acme/app")
    with database.session() as session:
        repo_settings.update_settings(
            session, full_name="acme/app", changes={"must_run": ["tests/smoke/*"]}
        )
    with database.session() as session:
        stored = session.query(Repository).one().settings
    assert stored == {"must_run": ["tests/smoke/*"]}
