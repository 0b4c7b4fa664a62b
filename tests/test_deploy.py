"""docker-compose.yml and the Dockerfile, checked without Docker: the
services, their commands and the order they start in; Prometheus's scrape
configuration and Grafana's provisioning, parsed and matched with the
compose file (that the dashboard's queries are exported is
tests/e2e/test_metrics.py's, after real traffic)."""

import json
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
    assert set(services) == {
        "postgres",
        "redis",
        "migrate",
        "api",
        "worker",
        "beat",
        "prometheus",
        "grafana",
    }


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


# --- Prometheus and Grafana --------------------------------------------------------


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """A service's bind mounts of the project: container path -> project path."""
    mounts = {}
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            mounts[target] = ROOT / source
    return mounts


def test_workers_serve_their_metrics_where_prometheus_scrapes_them(
    services: dict[str, Any],
) -> None:
    worker = services["worker"]
    port = worker["environment"]["RISKRANK_WORKER_METRICS_PORT"]
    assert port in worker["expose"]
    # Their pool processes meet in a directory of their own, as the api's do.
    for name in ("api", "worker"):
        directory = services[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        assert directory in services[name]["tmpfs"]
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {
        job_name: [(name, sd["port"]) for sd in job["dns_sd_configs"] for name in sd["names"]]
        for job_name, job in jobs.items()
    }
    assert targets == {"riskrank-api": [("api", 8000)], "riskrank-worker": [("worker", int(port))]}
    assert all(job["metrics_path"] == "/metrics" for job in jobs.values())


def test_prometheus_and_grafana_mount_the_deploy_files(services: dict[str, Any]) -> None:
    prometheus = _mounts(services["prometheus"])
    assert prometheus["/etc/prometheus/prometheus.yml"].is_file()
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    grafana = _mounts(services["grafana"])
    assert (grafana["/etc/grafana/provisioning"] / "datasources").is_dir()
    assert (grafana["/etc/grafana/dashboards"] / "riskrank.json").is_file()
    assert services["grafana"]["depends_on"] == ["prometheus"]
    for name in ("prometheus", "grafana"):
        assert any(not volume.startswith("./") for volume in services[name]["volumes"]), (
            f"{name} must keep its data in a volume"
        )


def test_grafana_provisioning_parses_and_points_at_the_dashboard(
    services: dict[str, Any],
) -> None:
    provisioning = ROOT / "deploy/grafana/provisioning"
    sources = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards/riskrank.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] in _mounts(services["grafana"])

    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/riskrank.json").read_text())
    assert dashboard["uid"] == "riskrank"
    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
    assert [title.split(":")[0] for title in rows] == ["Health", "Value", "Model"]
    queries = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    for panel in queries:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
