"""Administration and job tables: roles, role requests, API keys, runtime config, job lease
and history (issue 5).

Revision ID: a0001
Revises: t0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0001"
down_revision = "t0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_role",
        sa.Column("subject", sa.String(80), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("granted_by", sa.String(200), nullable=False),
        sa.Column("granted_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "role", name="pk_admin_role"),
    )
    op.create_table(
        "admin_role_request",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(80), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_admin_role_request"),
    )
    op.create_index("ix_admin_role_request_status", "admin_role_request", ["status"])
    op.create_table(
        "admin_api_key",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_digest", sa.String(64), nullable=False),
        sa.Column("roles", sa.String(200), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_by", sa.String(200), nullable=True),
        sa.Column("last_used_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_admin_api_key"),
    )
    op.create_table(
        "runtime_config",
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_runtime_config"),
    )
    op.create_table(
        "job_state",
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_until", sa.BigInteger(), nullable=True),
        sa.Column("run_id", sa.String(40), nullable=True),
        sa.Column("last_slot", sa.BigInteger(), nullable=True),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("last_started_at", sa.BigInteger(), nullable=True),
        sa.Column("last_finished_at", sa.BigInteger(), nullable=True),
        sa.Column("last_outcome", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("job", name="pk_job_state"),
    )
    op.create_table(
        "job_run",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("error", sa.String(200), nullable=True),
        sa.Column("resumed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job_run"),
    )
    op.create_index("ix_job_run_job_started_at", "job_run", ["job", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_job_run_job_started_at", table_name="job_run")
    op.drop_table("job_run")
    op.drop_table("job_state")
    op.drop_table("runtime_config")
    op.drop_table("admin_api_key")
    op.drop_index("ix_admin_role_request_status", table_name="admin_role_request")
    op.drop_table("admin_role_request")
    op.drop_table("admin_role")
