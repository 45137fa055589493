"""The pseudonymisation key id the service last ran with (decision 0022).

Revision ID: k0002
Revises: k0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "k0002"
down_revision = "k0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pseudonym_key_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kid", sa.String(16), nullable=False),
        sa.Column("since", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pseudonym_key_state"),
    )


def downgrade() -> None:
    op.drop_table("pseudonym_key_state")
