"""Sink dead letters and the retained bases that retention leaves behind.

Revision ID: a0002
Revises: a0001
"""

from __future__ import annotations

from alembic import op

from kroonika.audit.store._schema import retained_bases, sink_dead_letters

revision = "a0002"
down_revision = "a0001"

_TABLES = (sink_dead_letters, retained_bases)


def upgrade() -> None:
    bind = op.get_bind()
    for table in _TABLES:
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(_TABLES):
        table.drop(bind)
