"""The admin CLI imports only what a command uses: `riskrank --help` and the
database commands never load LightGBM, matplotlib or the backtest (issue 11,
defect 5, the server's part)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import clean_env

# The `riskrank` entry point (scheduler.cli.main:main), with the names of the
# modules loaded printed on stderr as the process exits.
WRAPPER = """
import atexit, json, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["riskrank", *sys.argv[1:]]
from scheduler.cli.main import main
main()
"""

HEAVY = ("lightgbm", "matplotlib", "numpy", "scheduler.backtest", "scheduler.services.scoring")


def loaded(arguments: list[str], env: dict[str, str], cwd: Path) -> tuple[int, set[str], str]:
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, *arguments],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("MODULES ")]
    assert len(lines) == 1, result.stderr
    return result.returncode, set(json.loads(lines[0].removeprefix("MODULES "))), result.stdout


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(
        name for name in modules if any(name == h or name.startswith(h + ".") for h in HEAVY)
    )


def test_help_loads_no_model_library_nor_the_backtest(tmp_path: Path) -> None:
    code, modules, out = loaded(["--help"], clean_env(), tmp_path)
    assert code == 0
    assert "repo" in out
    assert heavy_in(modules) == []
    # Nor the database layer: the settings and Alembic come with a command.
    assert {"alembic", "pydantic_settings", "celery", "sqlalchemy", "requests"} & modules == set()


@pytest.mark.parametrize(
    "arguments",
    [
        ["repo", "list", "--json"],
        ["token", "list", "--repo", "imports/never-registered"],
        ["db", "current"],
    ],
    ids=["repo list", "token list", "db current"],
)
def test_database_commands_load_no_model_library_nor_the_backtest(
    sqlite_url: str, tmp_path: Path, arguments: list[str]
) -> None:
    env = clean_env(RISKRANK_DATABASE_URL=sqlite_url)
    code, modules, _ = loaded(arguments, env, tmp_path)
    # token list refuses the unknown repository (a name no other test registers in
    # the shared SQLite file), after reading the database.
    assert code == (1 if arguments[0] == "token" else 0)
    assert "scheduler.services.repos" in modules or arguments[0] == "db"
    assert heavy_in(modules) == []
