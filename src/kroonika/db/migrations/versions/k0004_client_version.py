"""A token client's row version, bumped by every write of it (decision 0026): the undo of
a change whose record the audit trail refused puts its fields back only while the client
is still at the version that change produced.

Revision ID: k0004
Revises: k0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "k0004"
down_revision = "k0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The server default gives every existing client version 1, and keeps giving it to
    # a client registered by an instance still on the code before this revision.
    with op.batch_alter_table("token_clients") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("token_clients") as batch:
        batch.drop_column("version")
