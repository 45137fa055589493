"""The audit store: blocks, checkpoints, subject keys, purge grants, sink cursors.

Revision ID: a0001
Revises:
"""

from __future__ import annotations

from alembic import op

from kroonika.audit.store._schema import (
    POSTGRES_TRIGGERS,
    SQLITE_TRIGGERS,
    blocks,
    checkpoints,
    purge_grants,
    sink_cursors,
    subject_keys,
)

revision = "a0001"
down_revision = None

_TABLES = (blocks, checkpoints, subject_keys, purge_grants, sink_cursors)


def upgrade() -> None:
    bind = op.get_bind()
    for table in _TABLES:
        table.create(bind)
    triggers = SQLITE_TRIGGERS if bind.dialect.name == "sqlite" else POSTGRES_TRIGGERS
    for ddl in triggers:
        op.execute(ddl)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_append_only() CASCADE")
    for table in reversed(_TABLES):
        table.drop(bind)
