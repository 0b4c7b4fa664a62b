"""repository_trimming: the live estimate of what trimming misses over the
repository's newest evaluated plans, and the escalation it decided
(scheduler.services.trimming). NULL until a plan is evaluated.

Revision ID: c4f1e8a2d6b9
Revises: 9c4e2a7d1f08
Create Date: 2026-12-04 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c4f1e8a2d6b9"
down_revision: str | None = "9c4e2a7d1f08"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "trimming",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.drop_column("trimming")
