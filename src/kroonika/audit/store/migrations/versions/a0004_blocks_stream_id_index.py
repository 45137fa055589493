"""Index audit_blocks by (stream, id) so one stream is read in storage order cheaply.

Revision ID: a0004
Revises: a0003
"""

from __future__ import annotations

from alembic import op

revision = "a0004"
down_revision = "a0003"


def upgrade() -> None:
    # a0001 builds the tables from the current schema module, so a fresh store may
    # already have the index.
    op.execute("CREATE INDEX IF NOT EXISTS audit_blocks_stream_id ON audit_blocks (stream, id)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS audit_blocks_stream_id")
