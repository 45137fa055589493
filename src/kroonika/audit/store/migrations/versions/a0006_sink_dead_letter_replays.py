"""Dead letters can be replayed: ``replayed`` on audit_sink_dead_letters.

Revision ID: a0006
Revises: a0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0006"
down_revision = "a0005"


def upgrade() -> None:
    # a0002 builds the table from the current schema module, so a fresh store
    # already has the column.
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("audit_sink_dead_letters")}
    if "replayed" not in have:
        op.add_column(
            "audit_sink_dead_letters", sa.Column("replayed", sa.String(32), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_sink_dead_letters") as batch:
        batch.drop_column("replayed")
