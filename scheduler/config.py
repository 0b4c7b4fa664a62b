"""The one settings object. Read it at the edges (CLI, app factory, worker boot)
and hand values to services as arguments."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from scheduler.db import Timeouts
    from scheduler.providers_api.http import HttpSettings

# The embedded default's files, all in the data directory.
DATABASE_FILE = "riskrank.db"
BROKER_FILE = "riskrank-broker.db"
BEAT_SCHEDULE_FILE = "riskrank-beat-schedule"


def default_data_dir() -> Path:
    """$XDG_DATA_HOME/riskrank, else ~/.local/share/riskrank.

    The XDG base directory layout is what a Linux user expects of a
    command-line daemon's data, and on macOS ~/.local/share is where
    command-line tools (pipx, uv, Homebrew's own) keep theirs:
    ~/Library/Application Support is for applications with a window, and a
    path with a space in it is awkward in the shell and in a SQLite URL. A
    relative XDG_DATA_HOME is invalid by the specification and is ignored."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path(os.path.expanduser("~")) / ".local" / "share"
    return base / "riskrank"


def embedded_database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / DATABASE_FILE}"


def embedded_broker_url(data_dir: Path) -> str:
    return f"sqla+sqlite:///{data_dir / BROKER_FILE}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RISKRANK_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the embedded default keeps its files (the SQLite database, "
        "the SQLite broker, beat's schedule), whatever the working directory.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; postgres:// and postgresql:// mean psycopg 3. "
        "Unset: a SQLite file in the data directory.",
    )
    broker_url: str = Field(
        default="",
        description="Celery broker. Unset: a SQLite file beside the database, nothing to install.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    worker_metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Where each worker serves its own Prometheus metrics (0: it serves none; "
        "under `riskrank up` the api's /metrics shows them).",
    )
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
    database_connect_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How long any process waits for PostgreSQL to accept a connection "
        "(libpq counts whole seconds, at least 2). A server that accepts the TCP connection "
        "and never answers would otherwise hold each attempt for minutes.",
    )
    api_database_timeout_seconds: float = Field(
        default=4.0,
        gt=0,
        description="How long an API request waits on the database: PostgreSQL's "
        "statement_timeout, SQLite's busy timeout and the wait for a pooled connection. "
        "Past it the request answers 503 with Retry-After (a CI job or a webhook sender "
        "waits on every request; GitHub gives up after 10 s).",
    )
    api_database_pool_size: int = Field(
        default=8,
        ge=1,
        description="PostgreSQL connections each API process keeps open; at most this many "
        "webhooks of one process are at the database at once, the others wait their turn "
        "(opening a connection per request past the pool cost more than the request).",
    )
    webhook_secret_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        description="How long an API process reuses a repository's webhook secret it read: "
        "a secret set or rotated with `riskrank repo secret` takes effect within this time; "
        "0 reads it for every delivery.",
    )
    worker_statement_timeout_seconds: float = Field(
        default=0.0,
        ge=0,
        description="PostgreSQL's statement_timeout for the workers and the CLI; 0: none. "
        "Their statements are long by nature (a first ingestion, a training) and nobody "
        "waits on them synchronously.",
    )
    retry_after_seconds: int = Field(
        default=5,
        ge=1,
        description="The Retry-After of a 503 (the database or the broker is unavailable).",
    )
    sweep_interval_seconds: float = Field(default=60.0, gt=0)
    sweep_min_age_seconds: float = Field(
        default=30.0,
        ge=0,
        description="The sweeper's margin: an unhandled report or event queued before the "
        "sweep's own message was published, by more than this, has no message left in the "
        "queue and is queued again; the margin covers clock skew between machines and the "
        "moment between a commit and its publish (scheduler.services.retry).",
    )
    sweep_visibility_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="For a sweep whose message carries no publication time (called "
        "directly, or sent by an older beat): unhandled rows queued longer ago than this "
        "are queued again.",
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
    beat_schedule_file: str = Field(
        default="", description="Beat's schedule file. Unset: in the data directory."
    )
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
    plan_expand_after: int = Field(
        default=2,
        ge=0,
        description="A build runs every test its plan dropped once at least this many of the "
        "selected tests that had passed fail, and more than their probabilities make "
        "likely (0: never).",
    )
    rate_limit_requests: int = Field(
        default=0,
        ge=0,
        description="Requests one API token may make per window (plans and results); "
        "0 (the default) sets no limit. Past it: 429 with Retry-After.",
    )
    rate_limit_window_seconds: int = Field(
        default=60, ge=1, description="The window of rate_limit_requests, in seconds."
    )
    rate_limit_redis_url: str = Field(
        default="",
        description="Redis the rate limits are counted in, shared by every api process. "
        "Unset: the broker when it is Redis, else each process counts on its own.",
    )
    # Pulling results from the CI (scheduler.services.pulls, scheduler.providers_api).
    provider_connect_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long a call to GitHub's or GitLab's API may take to connect.",
    )
    provider_read_timeout_seconds: float = Field(
        default=30.0, gt=0, description="How long a call to the provider's API may wait for data."
    )
    provider_max_attempts: int = Field(
        default=5,
        ge=1,
        description="Tries of one call to the provider's API (5xx, timeouts, rate limits).",
    )
    provider_backoff_seconds: float = Field(
        default=1.0,
        gt=0,
        description="The first wait before another try (doubled each time), when the "
        "provider does not say how long to wait.",
    )
    provider_max_backoff_seconds: float = Field(default=60.0, gt=0)
    provider_total_seconds: float = Field(
        default=300.0,
        gt=0,
        description="The limit of one pull (listing, pages, downloads, waits): past it the "
        "event keeps its error and the sweeper tries again later.",
    )
    changes_max_attempts: int = Field(
        default=4,
        ge=1,
        description="Times an event's changed files are asked of the provider's API (a pull "
        "request's, an incomplete push's comparison) while it answers 5xx, rate limits or "
        "times out, each after the client's own retries; then the event is handled with its "
        "payload's files and the error says so. At most sweep_max_attempts - 1.",
    )
    changes_retry_seconds: float = Field(
        default=30.0,
        gt=0,
        description="The wait before asking again for an event's changed files, doubled "
        "each time (at least what the provider asked for).",
    )
    changes_max_retry_seconds: float = Field(default=600.0, gt=0)
    pull_max_artifact_bytes: int = Field(
        default=256 * 1024 * 1024, gt=0, description="The largest artifact zip downloaded."
    )
    pull_max_unzipped_bytes: int = Field(
        default=512 * 1024 * 1024,
        gt=0,
        description="The most an artifact's reports may inflate to, all files together "
        "(a zip bomb stops here).",
    )
    pull_max_files: int = Field(
        default=2000, gt=0, description="The most files an artifact zip may hold."
    )
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="auto: JSON lines when stderr is not a terminal, text on one.",
    )

    def provider_http(self) -> HttpSettings:
        """The bounds of the calls to the providers' APIs."""
        from scheduler.providers_api.http import HttpSettings  # requests loads only if used

        return HttpSettings(
            connect_timeout=self.provider_connect_timeout_seconds,
            read_timeout=self.provider_read_timeout_seconds,
            max_attempts=self.provider_max_attempts,
            backoff_seconds=self.provider_backoff_seconds,
            max_backoff_seconds=self.provider_max_backoff_seconds,
            total_seconds=self.provider_total_seconds,
            max_download_bytes=self.pull_max_artifact_bytes,
        )

    def database_timeouts(self) -> Timeouts:
        """The workers' and the CLI's (scheduler.db.Timeouts says why)."""
        from scheduler.db import Timeouts  # the settings load without the database layer

        return Timeouts(
            connect_seconds=self.database_connect_timeout_seconds,
            statement_seconds=self.worker_statement_timeout_seconds or None,
        )

    def api_database_timeouts(self) -> Timeouts:
        """The API's: every wait on the database bounded by
        api_database_timeout_seconds, and a database that failed to connect
        left alone for a second (one request probes it, the rest answer 503
        at once instead of filling the thread pool)."""
        from scheduler.db import Timeouts

        wait = self.api_database_timeout_seconds
        return Timeouts(
            connect_seconds=self.database_connect_timeout_seconds,
            statement_seconds=wait,
            pool_seconds=wait,
            busy_seconds=wait,
            down_seconds=1.0,
            pool_size=self.api_database_pool_size,
        )

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        # Heroku-style and bare PostgreSQL URLs would pick psycopg2, which we
        # do not ship; psycopg 3 is the driver.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Printed and derived URLs then name the same place from any directory.
        return value.expanduser().absolute()

    @model_validator(mode="after")
    def _derive_embedded_defaults(self) -> Settings:
        # Runs before the production check below (after-validators run in the
        # order they are defined), which then refuses these SQLite files.
        self.database_url = self.database_url or embedded_database_url(self.data_dir)
        self.broker_url = self.broker_url or embedded_broker_url(self.data_dir)
        self.beat_schedule_file = self.beat_schedule_file or str(self.data_dir / BEAT_SCHEDULE_FILE)
        return self

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
