"""Index the blocks that hold an alert or response record (partial index on id).

The alert state (decision 0036) is the ``alert.*`` and ``response.*`` records of the
trail. Its readers (``kroonika alerts list``, the service's first look) read every block
and skipped the others by their bytes: a cost that grew with the trail. This partial
index holds the ids of the blocks whose bytes contain one of the markers, so those
readers read these blocks only. Derived from the stored bytes by the database itself:
nothing is stored besides the trail, and nothing can disagree with it. Building it reads
every block once.

Revision ID: a0007
Revises: a0006
"""

from __future__ import annotations

from alembic import op

from kroonika.audit.store.sql import ALERT_BLOCKS_INDEX, alert_blocks_predicate

revision = "a0007"
down_revision = "a0006"


def upgrade() -> None:
    where = alert_blocks_predicate(op.get_bind().dialect.name)
    op.execute(
        f"CREATE INDEX IF NOT EXISTS {ALERT_BLOCKS_INDEX} ON audit_blocks (id) WHERE {where}"
    )


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {ALERT_BLOCKS_INDEX}")
