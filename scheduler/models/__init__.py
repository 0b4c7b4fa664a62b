"""Every SQLAlchemy model, importable from one place (Alembic reads Base.metadata)."""

from scheduler.models.base import Base
from scheduler.models.commit import ChangedFile, Commit
from scheduler.models.enums import (
    EventStatus,
    FileStatus,
    ModelStatus,
    Outcome,
    PlanStatus,
    Provider,
    RunSource,
    RunStatus,
)
from scheduler.models.event import CiEvent
from scheduler.models.repository import ApiToken, Repository
from scheduler.models.risk import Plan, PlanItem, RiskModel
from scheduler.models.testing import (
    Execution,
    FileTestLink,
    KnownTest,
    KnownTestStats,
    StatsChange,
    SuiteRun,
)

__all__ = [
    "ApiToken",
    "Base",
    "ChangedFile",
    "CiEvent",
    "Commit",
    "EventStatus",
    "Execution",
    "FileStatus",
    "FileTestLink",
    "KnownTest",
    "KnownTestStats",
    "ModelStatus",
    "Outcome",
    "Plan",
    "PlanItem",
    "PlanStatus",
    "Provider",
    "Repository",
    "RiskModel",
    "RunSource",
    "RunStatus",
    "StatsChange",
    "SuiteRun",
]
