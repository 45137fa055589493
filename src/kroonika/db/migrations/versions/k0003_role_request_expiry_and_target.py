"""Role requests expire like configuration requests; a configuration request names what
it changes (the runtime configuration or one token client), decision 0017.

Revision ID: k0003
Revises: k0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "k0003"
down_revision = "k0002"
branch_labels = None
depends_on = None

#: the default of KROONIKA_ADMIN_APPROVAL_TTL_S: a role request that was waiting when this
#: migration ran gets a day from when it was made (the migration cannot read the setting)
DEFAULT_TTL_S = 86_400


def upgrade() -> None:
    with op.batch_alter_table("admin_role_request") as batch:
        batch.add_column(sa.Column("expires_at", sa.BigInteger(), nullable=True))
    op.execute(
        sa.text("UPDATE admin_role_request SET expires_at = requested_at + :ttl").bindparams(
            ttl=DEFAULT_TTL_S
        )
    )
    with op.batch_alter_table("admin_role_request") as batch:
        batch.alter_column("expires_at", existing_type=sa.BigInteger(), nullable=False)
    with op.batch_alter_table("admin_config_request") as batch:
        batch.add_column(
            sa.Column("target", sa.String(100), nullable=False, server_default="config")
        )


def downgrade() -> None:
    with op.batch_alter_table("admin_config_request") as batch:
        batch.drop_column("target")
    with op.batch_alter_table("admin_role_request") as batch:
        batch.drop_column("expires_at")
