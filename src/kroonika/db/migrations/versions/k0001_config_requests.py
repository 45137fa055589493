"""Runtime configuration changes waiting for a second administrator (decision 0017).

Revision ID: k0001
Revises: j0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "k0001"
down_revision = "j0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_config_request",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.Column("expected", sa.Text(), nullable=False),
        sa.Column("weakening", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_admin_config_request"),
    )
    op.create_index("ix_admin_config_request_status", "admin_config_request", ["status"])


def downgrade() -> None:
    op.drop_index("ix_admin_config_request_status", table_name="admin_config_request")
    op.drop_table("admin_config_request")
