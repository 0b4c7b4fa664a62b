"""Plans: a payload written at scoring and the decision as one record each;
repositories: a statistics version.

The policy's decision moves from three columns of every plan item
(selected, propensity, rule) to one record on the plan (plans.decision):
the plan API wrote ten thousand rows per new policy, and now writes one.
Existing decisions are converted, both ways. Plans scored before this
revision have no payload: the plan API scores their commit again the next
time it is asked (scheduler.services.plans.lookup).

Revision ID: e3b9f0c4a711
Revises: d8a5c1e7f203
Create Date: 2026-11-29 13:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e3b9f0c4a711"
down_revision: str | None = "d8a5c1e7f203"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# NumPy and the decision record are imported where the data is converted:
# Alembic loads every revision to find the head, which each admin command
# checks, and those must not pay for NumPy.


def upgrade() -> None:
    import numpy as np

    from scheduler.planning.records import DecisionRecord

    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stats_version", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decision", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("payload", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("stats_version", sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # A payload is read whole on every first request: lz4 decompresses
        # several times faster than the default pglz (servers built without
        # lz4 keep pglz).
        op.execute(
            "DO $$ BEGIN ALTER TABLE plans ALTER COLUMN payload SET COMPRESSION lz4; "
            "EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN NULL; END $$"
        )

    connection = op.get_bind()
    applied = connection.execute(sa.text("SELECT id FROM plans WHERE policy IS NOT NULL")).all()
    for (plan_id,) in applied:
        rows = connection.execute(
            sa.text(
                "SELECT selected, propensity, rule FROM plan_items "
                "WHERE plan_id = :plan ORDER BY rank, id"
            ),
            {"plan": plan_id},
        ).all()
        n = len(rows)
        collected = [row for row, (selected, _, _) in enumerate(rows) if selected is not None]
        # The order CI ran was not recorded before: the stored rank stands for it.
        record = DecisionRecord.of(
            n,
            rows=np.array(collected, dtype=np.intp),
            selected=np.array([bool(rows[row][0]) for row in collected], dtype=bool),
            propensity=np.array(
                [np.nan if rows[row][1] is None else rows[row][1] for row in collected]
            ),
            rules=[rows[row][2] or "model" for row in collected],
            ranks=np.arange(1, len(collected) + 1),
        )
        connection.execute(
            sa.text("UPDATE plans SET decision = :decision WHERE id = :plan"),
            {"decision": record.encode(), "plan": plan_id},
        )

    with op.batch_alter_table("plan_items", schema=None) as batch_op:
        batch_op.drop_column("selected")
        batch_op.drop_column("propensity")
        batch_op.drop_column("rule")


def downgrade() -> None:
    from scheduler.planning.records import DecisionRecord

    with op.batch_alter_table("plan_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("selected", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("propensity", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("rule", sa.String(length=32), nullable=True))

    connection = op.get_bind()
    decided = connection.execute(
        sa.text("SELECT id, decision FROM plans WHERE decision IS NOT NULL")
    ).all()
    for plan_id, blob in decided:
        record = DecisionRecord.decode(bytes(blob))
        ids = connection.execute(
            sa.text("SELECT id FROM plan_items WHERE plan_id = :plan ORDER BY rank, id"),
            {"plan": plan_id},
        ).scalars()
        values = [
            {
                "id": item_id,
                "selected": record.selected_at(row),
                "propensity": record.propensity_at(row),
                "rule": record.rule[row],
            }
            for row, item_id in enumerate(ids)
            if row < len(record)
        ]
        if values:
            connection.execute(
                sa.text(
                    "UPDATE plan_items SET selected = :selected, propensity = :propensity, "
                    "rule = :rule WHERE id = :id"
                ),
                values,
            )

    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.drop_column("stats_version")
        batch_op.drop_column("payload")
        batch_op.drop_column("decision")
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.drop_column("stats_version")
