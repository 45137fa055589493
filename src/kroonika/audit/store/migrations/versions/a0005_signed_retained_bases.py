"""Sign retained bases: a key id and an Ed25519 signature on audit_retained_bases.

Revision ID: a0005
Revises: a0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0005"
down_revision = "a0004"


def upgrade() -> None:
    # a0002 builds the table from the current schema module, so a fresh store
    # already has the columns.
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("audit_retained_bases")}
    if "kid" not in have:
        op.add_column("audit_retained_bases", sa.Column("kid", sa.String(64), nullable=True))
    if "signature" not in have:
        op.add_column("audit_retained_bases", sa.Column("signature", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_retained_bases") as batch:
        batch.drop_column("signature")
        batch.drop_column("kid")
