"""docker-compose.yml and the Dockerfile, checked without Docker: the
services, their commands and the order they start in."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command

from scheduler.cli.main import app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    services: dict[str, Any] = compose["services"]
    return services


def test_services_are_the_production_set(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "beat"}


@pytest.mark.parametrize("name", ["postgres", "redis"])
def test_backing_services_have_healthchecks_and_volumes(
    services: dict[str, Any], name: str
) -> None:
    service = services[name]
    assert service["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}
    assert service["volumes"], f"{name} must keep its data in a volume"


@pytest.mark.parametrize(
    ("name", "command"),
    [("api", "serve"), ("worker", "worker"), ("beat", "beat"), ("migrate", "db")],
)
def test_riskrank_services_run_real_cli_commands(
    services: dict[str, Any], name: str, command: str
) -> None:
    service = services[name]
    assert service["image"] == "riskrank:latest"
    assert service["build"] == "."
    assert service["command"][0] == command
    # The command exists in the CLI the image's entrypoint runs.
    cli = get_command(app)
    assert command in cli.commands  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["api", "worker", "beat"])
def test_processes_wait_for_healthy_services_and_the_migration(
    services: dict[str, Any], name: str
) -> None:
    depends = services[name]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    env = services[name]["environment"]
    assert env["RISKRANK_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in env["RISKRANK_DATABASE_URL"]
    assert env["RISKRANK_BROKER_URL"] == "redis://redis:6379/0"
    assert env["RISKRANK_ENVIRONMENT"] == "production"


def test_worker_scales_and_beat_is_one(services: dict[str, Any]) -> None:
    # A fixed container name or host port would stop `--scale worker=N`.
    assert "container_name" not in services["worker"]
    assert "ports" not in services["worker"]
    assert services["beat"]["deploy"]["replicas"] == 1


def test_api_publishes_its_port_and_checks_readiness(services: dict[str, Any]) -> None:
    assert "8000:8000" in services["api"]["ports"]
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])


def test_dockerfile_builds_from_the_project_and_runs_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for path in ("scheduler", "workers", "migrations", "pyproject.toml"):
        assert f"COPY {path}" in dockerfile or f" {path} " in dockerfile
    assert 'ENTRYPOINT ["riskrank"]' in dockerfile
    assert "USER riskrank" in dockerfile
