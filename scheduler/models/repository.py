"""Repositories riskrank watches, and the API tokens that act on them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from scheduler.models.base import Base, BigIntId, JSONType, str_enum, utcnow
from scheduler.models.enums import Provider


class Repository(Base):
    __tablename__ = "repositories"
    __table_args__ = (UniqueConstraint("provider", "slug"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    provider: Mapped[Provider] = mapped_column(str_enum(Provider, "provider"))
    owner: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    # lower("owner/name"): providers treat names case-insensitively.
    slug: Mapped[str] = mapped_column(String(511))
    # GitHub and generic: kept in clear, verifying an HMAC needs the secret
    # itself. GitLab: NULL, its secret token is only compared, so only
    # webhook_secret_hash is kept (scheduler.ingest.payload.hash_secret).
    webhook_secret: Mapped[str | None] = mapped_column(String(255))
    webhook_secret_hash: Mapped[str | None] = mapped_column(String(128))
    # GitLab's signing token (`whsec_<base64 key>`): the HMAC key of the
    # `webhook-signature` header, kept in clear as webhook_secret is.
    webhook_signing_token: Mapped[str | None] = mapped_column(String(255))
    default_branch: Mapped[str | None] = mapped_column(String(255))
    # Pulling results from the CI (scheduler.services.pulls): the provider
    # API token, in clear (riskrank sends the token itself, as it computes an
    # HMAC with webhook_secret: SECURITY.md says why it is not encrypted);
    # the API's base URL and the artifact names to pull, NULL for the
    # provider's defaults (scheduler.services.provider_access).
    provider_token: Mapped[str | None] = mapped_column(String(512))
    provider_api_url: Mapped[str | None] = mapped_column(String(512))
    artifact_pattern: Mapped[str | None] = mapped_column(String(255))
    # Post a commit status with the plan and its outcome (needs the token).
    commit_status: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Policy defaults (budget, must-run globs, ...), read by the scheduler.
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # The live estimate of what trimming misses and the escalation it
    # decided (scheduler.services.trimming), written when a plan is
    # evaluated; NULL before the first evaluation.
    trimming: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Bumped by every write of its tests' statistics (ingestion): a plan
    # whose payload is as of this version needs no statistics read.
    stats_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Builds ingested (reports that share a build, one after the other,
    # count once), and the newest one's key ("<commit id>/<run key>"): the
    # numbers file-test links are valued at (scheduler.risk.links).
    build_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    last_build: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    # NULL: an admin token, not bound to one repository.
    repository_id: Mapped[int | None] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    # sha256 hex of the token; the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
