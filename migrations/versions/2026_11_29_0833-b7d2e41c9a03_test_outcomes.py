"""Test outcomes: report digests, retries of ingestion, and statistics for
flakiness and sharded builds.

Revision ID: b7d2e41c9a03
Revises: 68084708487a
Create Date: 2026-11-29 08:33:24.311195
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7d2e41c9a03"
down_revision: str | None = "68084708487a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("test_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("report_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_unique_constraint(
            batch_op.f("uq_test_runs_repository_id_commit_id_report_sha256"),
            ["repository_id", "commit_id", "report_sha256"],
        )

    with op.batch_alter_table("test_stats", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("flaky_runs", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("duration_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("last_build", sa.String(length=320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("test_stats", schema=None) as batch_op:
        batch_op.drop_column("last_build")
        batch_op.drop_column("duration_count")
        batch_op.drop_column("flaky_runs")

    with op.batch_alter_table("test_runs", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_test_runs_repository_id_commit_id_report_sha256"), type_="unique"
        )
        batch_op.drop_column("attempts")
        batch_op.drop_column("queued_at")
        batch_op.drop_column("report_sha256")
