"""The embedded default keeps its files in one data directory, whatever the
working directory, and a command that finds no database says where it looked
instead of making an empty one (issue 11, defect 6)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from scheduler import migrate
from tests.e2e.conftest import RISKRANK, clean_env
from tests.helpers import free_port


def run(*arguments: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RISKRANK, *arguments],
        # Wide, so that a path in a message is never folded across lines.
        env={**env, "COLUMNS": "500"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def files_under(*roots: Path) -> list[Path]:
    return sorted(path for root in roots for path in root.rglob("*") if path.is_file())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A HOME of the test's own: the default data directory lives under it."""
    home = tmp_path / "home"
    home.mkdir()
    return home


def user_env(home: Path, **overrides: str) -> dict[str, str]:
    env = clean_env(HOME=str(home))
    env.pop("XDG_DATA_HOME", None)
    return {**env, **overrides}


@pytest.mark.parametrize(
    "command",
    [
        ["repo", "list"],
        ["repo", "add", "acme/app"],
        ["token", "list", "--repo", "acme/app"],
        ["models", "list", "acme/app"],
        ["db", "current"],
        ["db", "prune"],
        ["serve", "--port", str(free_port())],
        ["worker"],
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_a_command_without_a_database_names_the_path_and_creates_nothing(
    tmp_path: Path, home: Path, command: list[str]
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    result = run(*command, env=user_env(home, RISKRANK_DATA_DIR=str(data_dir)), cwd=cwd)
    assert result.returncode == 1, result.stdout
    assert f"no riskrank database at {data_dir / 'riskrank.db'}" in result.stderr
    assert f"RISKRANK_DATA_DIR, is {data_dir}" in result.stderr
    assert "`riskrank up` or `riskrank db upgrade`" in result.stderr
    assert files_under(tmp_path) == []


def test_an_explicit_sqlite_url_is_named_as_the_place_looked(tmp_path: Path, home: Path) -> None:
    database = tmp_path / "nowhere" / "x.db"
    env = user_env(home, RISKRANK_DATABASE_URL=f"sqlite:///{database}")
    result = run("repo", "list", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert f"no riskrank database at {database} (set by RISKRANK_DATABASE_URL)" in result.stderr
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("chosen_by", ["RISKRANK_DATA_DIR", "XDG_DATA_HOME", "HOME"])
def test_every_working_directory_sees_the_same_database(
    tmp_path: Path, home: Path, chosen_by: str
) -> None:
    data_dir = {
        "RISKRANK_DATA_DIR": tmp_path / "data",
        "XDG_DATA_HOME": tmp_path / "xdg" / "riskrank",
        "HOME": home / ".local" / "share" / "riskrank",
    }[chosen_by]
    overrides = {
        "RISKRANK_DATA_DIR": {"RISKRANK_DATA_DIR": str(data_dir)},
        "XDG_DATA_HOME": {"XDG_DATA_HOME": str(tmp_path / "xdg")},
        "HOME": {},
    }[chosen_by]
    env = user_env(home, **overrides)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()

    upgraded = run("db", "upgrade", env=env, cwd=first)
    assert upgraded.returncode == 0, upgraded.stderr
    database = data_dir / "riskrank.db"
    assert f"database at revision {migrate.head()} in {database}" in upgraded.stdout
    added = run("repo", "add", "acme/app", env=env, cwd=first)
    assert added.returncode == 0, added.stderr

    listed = run("repo", "list", "--json", env=env, cwd=second)
    assert listed.returncode == 0, listed.stderr
    assert [row["repository"] for row in json.loads(listed.stdout)] == ["acme/app"]
    current = run("db", "current", env=env, cwd=second)
    assert f"current: {migrate.head()}" in current.stdout
    # Nothing in either working directory; the database where it was said to be.
    assert files_under(first, second) == []
    assert database.is_file()
