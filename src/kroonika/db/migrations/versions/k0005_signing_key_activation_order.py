"""The order in which signing keys were activated (decision 0006, 2026-11-28 (2)): two
keys activated within the same second (a first key and an emergency rotation right
after it) tied on their whole-second times and the random kid chose which signed.

Revision ID: k0005
Revises: k0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "k0005"
down_revision = "k0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: a key made before this revision, or by an instance still on
    # the code before it, has none and ranks first among the keys of its second.
    with op.batch_alter_table("token_signing_keys") as batch:
        batch.add_column(sa.Column("activation_seq", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("token_signing_keys") as batch:
        batch.drop_column("activation_seq")
