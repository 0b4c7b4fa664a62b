"""commit_changes_note: why a commit's changed files may be incomplete (the
provider was not asked successfully and the event's payload was used), said
by its plans' answers. NULL: nothing to say.

Revision ID: e3b9a7c5d210
Revises: c4f1e8a2d6b9
Create Date: 2026-12-05 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e3b9a7c5d210"
down_revision: str | None = "c4f1e8a2d6b9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("commits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("changes_note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("commits", schema=None) as batch_op:
        batch_op.drop_column("changes_note")
