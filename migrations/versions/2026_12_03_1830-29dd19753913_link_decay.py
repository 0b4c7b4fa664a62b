"""file_test_links count status changes and decay: float counts valued at a
build number, and each repository's count of builds.

`file_test_links.changed_together` and `failed_together` become floats
valued at the repository's build `valued_at` (scheduler.risk.links); the
repository keeps its count of builds and its newest build's key. Both are
counted from the ingested runs here, and every existing link is valued at
its repository's count: its counts stay as they were (failed_together still
counts every failing build, not only status changes) until the repository's
history is imported again or the links age out.

Revision ID: 29dd19753913
Revises: 4c9873b9a8f2
Create Date: 2026-12-03 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "29dd19753913"
down_revision: str | None = "4c9873b9a8f2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each repository's ingested builds (runs with executions; a build's key as
# ingestion makes it: "<commit id>/<run key or run-<id>>"), counted, and
# the newest one's key.
_COUNT_BUILDS = """
UPDATE repositories SET
  build_count = (
    SELECT count(DISTINCT CAST(r.commit_id AS TEXT) || '/'
                 || coalesce(r.run_key, 'run-' || CAST(r.id AS TEXT)))
    FROM test_runs AS r
    WHERE r.repository_id = repositories.id AND r.status = 'ingested'
      AND EXISTS (SELECT 1 FROM executions AS e WHERE e.run_id = r.id)
  ),
  last_build = (
    SELECT CAST(r.commit_id AS TEXT) || '/' || coalesce(r.run_key, 'run-' || CAST(r.id AS TEXT))
    FROM test_runs AS r
    WHERE r.repository_id = repositories.id AND r.status = 'ingested'
      AND EXISTS (SELECT 1 FROM executions AS e WHERE e.run_id = r.id)
    ORDER BY r.id DESC LIMIT 1
  )
"""


def upgrade() -> None:
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("build_count", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("last_build", sa.String(length=320), nullable=True))
    with op.batch_alter_table("file_test_links", schema=None) as batch_op:
        batch_op.alter_column(
            "changed_together",
            existing_type=sa.Integer(),
            type_=sa.Float(),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "failed_together", existing_type=sa.Integer(), type_=sa.Float(), existing_nullable=False
        )
        batch_op.add_column(
            sa.Column("valued_at", sa.BigInteger(), server_default="0", nullable=False)
        )
    op.execute(_COUNT_BUILDS)
    op.execute(
        "UPDATE file_test_links SET valued_at = (SELECT build_count FROM repositories"
        " WHERE repositories.id = file_test_links.repository_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("file_test_links", schema=None) as batch_op:
        batch_op.drop_column("valued_at")
        batch_op.alter_column(
            "failed_together",
            existing_type=sa.Float(),
            type_=sa.Integer(),
            existing_nullable=False,
            postgresql_using="round(failed_together)::integer",
        )
        batch_op.alter_column(
            "changed_together",
            existing_type=sa.Float(),
            type_=sa.Integer(),
            existing_nullable=False,
            postgresql_using="round(changed_together)::integer",
        )
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.drop_column("last_build")
        batch_op.drop_column("build_count")
