"""event_summary: what a pull read of a CI run beside its reports (its
jobs' conclusions: {"jobs": [{"name": …, "conclusion": …}]}). NULL:
nothing read (not a pull, or the jobs could not be listed).

Revision ID: a6d2c8e4f713
Revises: e3b9a7c5d210
Create Date: 2026-12-05 08:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a6d2c8e4f713"
down_revision: str | None = "e3b9a7c5d210"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ci_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "summary",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("ci_events", schema=None) as batch_op:
        batch_op.drop_column("summary")
