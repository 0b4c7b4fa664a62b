"""Plans: the policy last applied, and each item's rule.

Revision ID: d8a5c1e7f203
Revises: c4f1a2b3d5e6
Create Date: 2026-11-29 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "d8a5c1e7f203"
down_revision: str | None = "c4f1a2b3d5e6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns: plain ADD COLUMN on both backends, existing rows kept.
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "policy",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
    with op.batch_alter_table("plan_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rule", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("plan_items", schema=None) as batch_op:
        batch_op.drop_column("rule")
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.drop_column("policy")
