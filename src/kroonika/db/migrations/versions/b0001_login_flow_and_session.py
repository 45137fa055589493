"""Login flows and sessions.

Revision ID: b0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_flow",
        sa.Column("flow_id", sa.String(36), nullable=False),
        sa.Column("state_digest", sa.String(64), nullable=False),
        sa.Column("nonce_digest", sa.String(64), nullable=False),
        sa.Column("acr_requested", sa.String(16), nullable=False),
        sa.Column("methods", sa.String(64), nullable=False),
        sa.Column("ui_locales", sa.String(16), nullable=False),
        sa.Column("return_to", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("consumed_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("flow_id", name="pk_login_flow"),
        sa.UniqueConstraint("state_digest", name="uq_login_flow_state_digest"),
    )
    op.create_index("ix_login_flow_expires_at", "login_flow", ["expires_at"])
    op.create_table(
        "session",
        sa.Column("ref", sa.String(32), nullable=False),
        sa.Column("secret_digest", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(80), nullable=False),
        sa.Column("given_name", sa.String(256), nullable=True),
        sa.Column("family_name", sa.String(256), nullable=True),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("acr", sa.String(16), nullable=False),
        sa.Column("flow_id", sa.String(36), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_at", sa.BigInteger(), nullable=False),
        sa.Column("idle_expires_at", sa.BigInteger(), nullable=False),
        sa.Column("absolute_expires_at", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.Column("end_reason", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("ref", name="pk_session"),
        sa.UniqueConstraint("secret_digest", name="uq_session_secret_digest"),
    )
    op.create_index("ix_session_subject_ended_at", "session", ["subject", "ended_at"])
    op.create_index("ix_session_idle_expires_at", "session", ["idle_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_session_idle_expires_at", table_name="session")
    op.drop_index("ix_session_subject_ended_at", table_name="session")
    op.drop_table("session")
    op.drop_index("ix_login_flow_expires_at", table_name="login_flow")
    op.drop_table("login_flow")
