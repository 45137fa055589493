"""Per-person security profiles (issue 6).

Revision ID: s0001
Revises: b0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s0001"
down_revision = "b0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "security_profile",
        sa.Column("person", sa.String(128), nullable=False),
        sa.Column("login_count", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", sa.BigInteger(), nullable=False),
        sa.Column("last_at", sa.BigInteger(), nullable=True),
        sa.Column("last_country", sa.String(8), nullable=True),
        sa.Column("last_city", sa.String(128), nullable=True),
        sa.Column("last_lat", sa.String(16), nullable=True),
        sa.Column("last_lon", sa.String(16), nullable=True),
        sa.Column("last_accuracy_km", sa.Integer(), nullable=True),
        sa.Column("countries", sa.Text(), nullable=False),
        sa.Column("networks", sa.Text(), nullable=False),
        sa.Column("hours", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("person", name=op.f("pk_security_profile")),
    )


def downgrade() -> None:
    op.drop_table("security_profile")
