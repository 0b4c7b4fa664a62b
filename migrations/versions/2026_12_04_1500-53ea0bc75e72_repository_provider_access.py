"""repository_provider_access: what riskrank needs to pull a repository's
test results from its CI (the provider API token, the API's base URL, the
artifact names to pull). NULL everywhere: nothing is pulled until an
operator sets a token (`riskrank repo api`).

Revision ID: 53ea0bc75e72
Revises: b7e2d4f1a9c3
Create Date: 2026-12-04 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "53ea0bc75e72"
down_revision: str | None = "b7e2d4f1a9c3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provider_token", sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column("provider_api_url", sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column("artifact_pattern", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.drop_column("artifact_pattern")
        batch_op.drop_column("provider_api_url")
        batch_op.drop_column("provider_token")
