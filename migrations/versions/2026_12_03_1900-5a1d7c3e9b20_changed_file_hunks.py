"""changed_file_hunks: each changed file's diff hunks and their symbols.

A nullable column: files recorded before (or from a source without hunks)
read as "hunks unknown", as they did.

Revision ID: 5a1d7c3e9b20
Revises: 29dd19753913
Create Date: 2026-12-03 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5a1d7c3e9b20"
down_revision: str | None = "29dd19753913"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("changed_files", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "hunks",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("changed_files", schema=None) as batch_op:
        batch_op.drop_column("hunks")
