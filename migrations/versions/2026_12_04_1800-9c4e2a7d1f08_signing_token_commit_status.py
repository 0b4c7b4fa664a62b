"""signing_token_commit_status: a GitLab webhook's signing token (the HMAC
key of its `webhook-signature` header, kept in clear as GitHub's webhook
secret is), and whether riskrank posts commit statuses for the repository
(off by default).

Revision ID: 9c4e2a7d1f08
Revises: 53ea0bc75e72
Create Date: 2026-12-04 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9c4e2a7d1f08"
down_revision: str | None = "53ea0bc75e72"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("webhook_signing_token", sa.String(length=255), nullable=True)
        )
        batch_op.add_column(
            sa.Column("commit_status", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.drop_column("commit_status")
        batch_op.drop_column("webhook_signing_token")
