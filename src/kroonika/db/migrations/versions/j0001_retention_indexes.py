"""Indexes for the retention deletes of ended sessions and idle security profiles.

Revision ID: j0001
Revises: a0001
"""

from __future__ import annotations

from alembic import op

revision = "j0001"
down_revision = "a0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_session_ended_at", "session", ["ended_at"])
    op.create_index("ix_security_profile_updated_at", "security_profile", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_security_profile_updated_at", table_name="security_profile")
    op.drop_index("ix_session_ended_at", table_name="session")
