"""Plans: feature vectors as float32 bytes, with the names of their features.

Revision ID: c4f1a2b3d5e6
Revises: b7d2e41c9a03
Create Date: 2026-11-29 09:25:04.303981
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c4f1a2b3d5e6"
down_revision: str | None = "b7d2e41c9a03"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # No release wrote plan items before this revision (scoring arrives with
    # it), so the column is replaced rather than converted.
    op.execute("DELETE FROM plan_items")
    with op.batch_alter_table("plan_items", schema=None) as batch_op:
        batch_op.drop_column("features")
        batch_op.add_column(sa.Column("features", sa.LargeBinary(), nullable=False))
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "feature_names",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default="[]",
            )
        )


def downgrade() -> None:
    op.execute("DELETE FROM plan_items")
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.drop_column("feature_names")
    with op.batch_alter_table("plan_items", schema=None) as batch_op:
        batch_op.drop_column("features")
        batch_op.add_column(
            sa.Column(
                "features",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
            )
        )
