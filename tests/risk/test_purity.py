"""scheduler/risk stays pure: no module there imports the database layer or
the services (ARCHITECTURE.md: features, the model wrapper and calibration
are pure). Read from the source, so a forbidden import in a branch that
never runs is caught as well."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import scheduler.risk

RISK = Path(scheduler.risk.__file__).parent
FORBIDDEN = ("scheduler.services", "scheduler.models", "scheduler.db", "sqlalchemy", "psycopg")


def imported_names(tree: ast.Module) -> list[tuple[int, str]]:
    """Every module an import statement names, fully qualified (with `from
    a import b`, both a and a.b: b may be a module), with its line."""
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = ["scheduler", "risk"][: max(0, 2 - (node.level - 1))]
                base = ".".join([*package, *([base] if base else [])])
            names.append((node.lineno, base))
            names.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return names


def is_forbidden(name: str) -> bool:
    return any(name == package or name.startswith(package + ".") for package in FORBIDDEN)


def violations(source: str, module: str) -> list[str]:
    return sorted(
        {
            f"{module}:{line} imports {name}"
            for line, name in imported_names(ast.parse(source))
            if is_forbidden(name)
        }
    )


@pytest.mark.parametrize(
    "path", sorted(RISK.rglob("*.py")), ids=lambda path: str(path.relative_to(RISK))
)
def test_risk_modules_import_nothing_impure(path: Path) -> None:
    module = "scheduler.risk." + ".".join(path.relative_to(RISK).with_suffix("").parts)
    assert violations(path.read_text(), module) == []


def test_the_check_names_module_and_import() -> None:
    source = (
        "import sqlalchemy.orm\n"
        "from scheduler import models\n"
        "from scheduler.services.sql import chunks\n"
        "import psycopg\n"
        "from scheduler.dbx import thing\n"  # not scheduler.db
        "def f():\n    from ..db import Database\n"
    )
    assert violations(source, "scheduler.risk.example") == [
        "scheduler.risk.example:1 imports sqlalchemy.orm",
        "scheduler.risk.example:2 imports scheduler.models",
        "scheduler.risk.example:3 imports scheduler.services.sql",
        "scheduler.risk.example:3 imports scheduler.services.sql.chunks",
        "scheduler.risk.example:4 imports psycopg",
        "scheduler.risk.example:7 imports scheduler.db",
        "scheduler.risk.example:7 imports scheduler.db.Database",
    ]
