"""run_ingested_tests: how far a run's ingestion in steps has come.

Runs stored before are either ingested or not started: 0 is right for both
(an ingested run is never read again).

Revision ID: b7e2d4f1a9c3
Revises: 8e2f6a4b1c57
Create Date: 2026-12-03 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7e2d4f1a9c3"
down_revision: str | None = "8e2f6a4b1c57"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("test_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ingested_tests", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("test_runs", schema=None) as batch_op:
        batch_op.drop_column("ingested_tests")
