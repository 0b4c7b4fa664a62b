import pytest
from pydantic import ValidationError

from scheduler.config import EMBEDDED_BROKER_URL, EMBEDDED_DATABASE_URL, Settings


def test_defaults_are_the_embedded_files(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RISKRANK_DATABASE_URL", "RISKRANK_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.database_url == EMBEDDED_DATABASE_URL == "sqlite:///riskrank.db"
    assert settings.broker_url == EMBEDDED_BROKER_URL == "sqla+sqlite:///riskrank-broker.db"


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
