"""The one settings object. Read it at the edges (CLI, app factory, worker boot)
and hand values to services as arguments."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_DATABASE_URL = "sqlite:///riskrank.db"
EMBEDDED_BROKER_URL = "sqla+sqlite:///riskrank-broker.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RISKRANK_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    database_url: str = Field(
        default=EMBEDDED_DATABASE_URL,
        description="SQLAlchemy URL; postgres:// and postgresql:// mean psycopg 3.",
    )
    broker_url: str = Field(
        default=EMBEDDED_BROKER_URL,
        description="Celery broker; the default is a SQLite file, nothing to install.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(
        default=25 * 1024 * 1024,
        gt=0,
        description="Largest request body accepted; GitHub's own limit is 25 MB.",
    )
    publish_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How long a request may wait on the broker before the sweeper takes over.",
    )
    sweep_interval_seconds: float = Field(default=60.0, gt=0)
    sweep_min_age_seconds: float = Field(
        default=30.0,
        ge=0,
        description="Unhandled events older than this are queued again by the sweeper.",
    )
    sweep_max_attempts: int = Field(default=10, ge=1)
    train_every_runs: int = Field(
        default=50, ge=1, description="Retrain a repository after this many new reports."
    )
    train_every_hours: float = Field(
        default=24.0, gt=0, description="…or after this many hours, if any report came."
    )
    train_check_seconds: float = Field(
        default=600.0, gt=0, description="How often beat looks for repositories to retrain."
    )
    beat_schedule_file: str = "riskrank-beat-schedule"
    retention_days: float = Field(
        default=90.0,
        ge=0,
        description="Plans, handled CI events and raw reports of ingested runs older than "
        "this are removed (scheduler.services.retention); 0 keeps everything.",
    )
    prune_interval_seconds: float = Field(
        default=6 * 3600.0, gt=0, description="How often beat prunes what is past retention."
    )
    # The plan API (scheduler.services.plans); a repository's settings
    # (repositories.settings) override the policy defaults.
    plan_wait_seconds: float = Field(
        default=2.0,
        ge=0,
        description="How long a plan request waits for the worker's scores before scoring inline.",
    )
    plan_exploration_rate: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Share of the tests a budget drops that run anyway (exploration sample).",
    )
    plan_recent_failures: int = Field(
        default=2, ge=0, description="Tests that failed in their last N runs always run."
    )
    plan_full_run_every: int = Field(
        default=20, ge=0, description="Every N-th build of the default branch runs everything."
    )
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        # Heroku-style and bare PostgreSQL URLs would pick psycopg2, which we
        # do not ship; psycopg 3 is the driver.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @model_validator(mode="after")
    def _refuse_embedded_defaults_in_production(self) -> Settings:
        if self.environment == "production" and (
            self.database_url.startswith("sqlite") or self.broker_url.startswith("sqla+sqlite")
        ):
            raise ValueError(
                "RISKRANK_ENVIRONMENT=production needs RISKRANK_DATABASE_URL and "
                "RISKRANK_BROKER_URL set to a server (PostgreSQL and Redis); "
                "the SQLite files are the single-machine default"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
