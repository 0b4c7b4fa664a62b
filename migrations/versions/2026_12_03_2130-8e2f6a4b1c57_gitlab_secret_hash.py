"""gitlab_secret_hash: GitLab webhook secrets kept as a salted hash only.

GitLab sends the secret token itself with every delivery (X-Gitlab-Token),
so riskrank only needs to compare it: the clear secret of each GitLab
repository becomes `webhook_secret_hash` and the clear column is emptied.
GitHub and generic secrets stay in clear (an HMAC is computed with them).

The downgrade cannot give the secrets back: GitLab repositories come out of
it with no secret, and their deliveries are refused until an operator sets
one again (`riskrank repo secret`).

Revision ID: 8e2f6a4b1c57
Revises: 5a1d7c3e9b20
Create Date: 2026-12-03 21:30:00.000000
"""

import hashlib
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8e2f6a4b1c57"
down_revision: str | None = "5a1d7c3e9b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

repositories = sa.table(
    "repositories",
    sa.column("id", sa.BigInteger()),
    sa.column("provider", sa.String()),
    sa.column("webhook_secret", sa.String()),
    sa.column("webhook_secret_hash", sa.String()),
)


def _hash(secret: str) -> str:
    # scheduler.ingest.payload.hash_secret as of this revision, spelled out
    # so that the migration keeps meaning what it meant if that one changes.
    salt = secrets.token_hex(16)
    return f"sha256${salt}${hashlib.sha256(f'{salt}:{secret}'.encode()).hexdigest()}"


def upgrade() -> None:
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("webhook_secret_hash", sa.String(length=128), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(repositories.c.id, repositories.c.webhook_secret).where(
            repositories.c.provider == "gitlab", repositories.c.webhook_secret.is_not(None)
        )
    ).all()
    for row_id, secret in rows:
        connection.execute(
            repositories.update()
            .where(repositories.c.id == row_id)
            .values(webhook_secret=None, webhook_secret_hash=_hash(secret))
        )


def downgrade() -> None:
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.drop_column("webhook_secret_hash")
