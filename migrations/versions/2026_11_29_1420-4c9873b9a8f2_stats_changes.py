"""stats_changes: which tests each statistics write changed, per version.

A plan scored at an older statistics version reads again only the tests
changed since (scheduler.services.plans.items). Versions written before
this revision have no record: plans scored before it read every test's
statistics again, as they did.

Revision ID: 4c9873b9a8f2
Revises: e3b9f0c4a711
Create Date: 2026-11-29 14:20:34.088242
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4c9873b9a8f2"
down_revision: str | None = "e3b9f0c4a711"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stats_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "repository_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("test_ids", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_stats_changes_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_changes")),
        sa.UniqueConstraint(
            "repository_id", "version", name=op.f("uq_stats_changes_repository_id_version")
        ),
    )


def downgrade() -> None:
    op.drop_table("stats_changes")
