from pathlib import Path

import pytest
from pydantic import ValidationError

from scheduler.config import Settings

EMBEDDED = ("RISKRANK_DATA_DIR", "RISKRANK_DATABASE_URL", "RISKRANK_BROKER_URL")


def test_defaults_are_the_embedded_files_in_the_data_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in (*EMBEDDED, "RISKRANK_BEAT_SCHEDULE_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    data = tmp_path / "xdg" / "riskrank"
    assert settings.data_dir == data
    assert settings.database_url == f"sqlite:///{data}/riskrank.db"
    assert settings.broker_url == f"sqla+sqlite:///{data}/riskrank-broker.db"
    assert settings.beat_schedule_file == f"{data}/riskrank-beat-schedule"


def test_without_xdg_data_home_the_data_directory_is_under_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in EMBEDDED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    for xdg in (None, "relative/is/ignored"):
        if xdg is None:
            monkeypatch.delenv("XDG_DATA_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_DATA_HOME", xdg)
        assert Settings().data_dir == tmp_path / ".local" / "share" / "riskrank"


def test_a_data_directory_moves_the_embedded_files_not_the_servers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in EMBEDDED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RISKRANK_DATA_DIR", "data")  # relative: to where it was read
    settings = Settings()
    assert settings.data_dir == tmp_path / "data"
    assert settings.database_url == f"sqlite:///{tmp_path}/data/riskrank.db"
    monkeypatch.setenv("RISKRANK_DATABASE_URL", "postgres://db/riskrank")
    monkeypatch.setenv("RISKRANK_BROKER_URL", "redis://redis:6379/0")
    servers = Settings()
    assert servers.database_url == "postgresql+psycopg://db/riskrank"
    assert servers.broker_url == "redis://redis:6379/0"


def test_environment_variables_have_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKRANK_PORT", "9123")
    monkeypatch.setenv("RISKRANK_MAX_BODY_BYTES", "1024")
    settings = Settings()
    assert (settings.port, settings.max_body_bytes) == (9123, 1024)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@db:5432/x",
        "postgresql://u:p@db:5432/x",
        "postgresql+psycopg://u:p@db:5432/x",
    ],
)
def test_postgres_urls_use_psycopg_3(url: str) -> None:
    assert Settings(database_url=url).database_url == "postgresql+psycopg://u:p@db:5432/x"


def test_production_needs_servers() -> None:
    with pytest.raises(ValidationError, match="RISKRANK_DATABASE_URL"):
        Settings(environment="production")
    settings = Settings(
        environment="production",
        database_url="postgresql://db/riskrank",
        broker_url="redis://redis:6379/0",
    )
    assert settings.environment == "production"


@pytest.mark.parametrize(("field", "value"), [("port", 0), ("max_body_bytes", 0)])
def test_out_of_range_values_are_refused(field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})
