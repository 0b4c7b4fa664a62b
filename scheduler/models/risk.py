"""Trained models and the plans they produce."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, LargeBinary, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from scheduler.models.base import Base, BigIntId, JSONType, str_enum, utcnow
from scheduler.models.enums import ModelStatus, PlanStatus


class RiskModel(Base):
    __tablename__ = "risk_models"
    __table_args__ = (UniqueConstraint("repository_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    version: Mapped[int]
    status: Mapped[ModelStatus] = mapped_column(
        str_enum(ModelStatus, "model_status"), default=ModelStatus.CANDIDATE
    )
    # LightGBM's own text format: portable across versions and platforms.
    model_text: Mapped[str] = mapped_column(Text)
    feature_names: Mapped[list[str]] = mapped_column(JSONType)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    train_from: Mapped[datetime | None]
    train_to: Mapped[datetime | None]
    train_rows: Mapped[int] = mapped_column(default=0)
    train_failures: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    promoted_at: Mapped[datetime | None]


class Plan(Base):
    """The scores of every test of a repository for one commit."""

    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    commit_id: Mapped[int] = mapped_column(ForeignKey("commits.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("risk_models.id", ondelete="SET NULL"))
    status: Mapped[PlanStatus] = mapped_column(
        str_enum(PlanStatus, "plan_status"), default=PlanStatus.PENDING
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    scored_at: Mapped[datetime | None]
    # The order of the features in every item's vector.
    feature_names: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # APFD, failures caught and missed, once the outcomes are in.
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The policy last applied (scheduler.planning.policy.Policy.as_json, plus
    # the collected tests' digest) and what it decided for each test
    # (scheduler.planning.records.DecisionRecord): the plan API writes them,
    # in one row, only when the policy changes.
    policy: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    decision: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    # What serving the plan reads, written by the worker with the items
    # (scheduler.planning.records.Payload), and the repository's statistics
    # version its statistics are as of (Repository.stats_version). The two
    # records load only when asked for: a payload is megabytes.
    payload: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    stats_version: Mapped[int | None] = mapped_column(BigInteger)


class PlanItem(Base):
    __tablename__ = "plan_items"
    __table_args__ = (UniqueConstraint("plan_id", "test_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    test_id: Mapped[int] = mapped_column(
        ForeignKey("known_tests.id", ondelete="CASCADE"), index=True
    )
    probability: Mapped[float] = mapped_column(Float)
    rank: Mapped[int]
    # The feature vector that produced the probability, in the order of the
    # plan's feature names: little-endian float32, 4 bytes a feature (compact
    # and fast to write for 10,000 tests; numpy.frombuffer reads it back).
    features: Mapped[bytes] = mapped_column(LargeBinary)
    # The features that pushed the probability up most: {name: contribution}.
    contributions: Mapped[dict[str, float] | None] = mapped_column(JSONType)
    # Why it got its probability, for a person.
    reason: Mapped[str | None] = mapped_column(Text)
