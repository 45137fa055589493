"""Token service tables: signing keys, clients, issued tokens, allow/deny lists (issue 4).

Revision ID: t0001
Revises: s0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "t0001"
down_revision = "s0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_signing_keys",
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("alg", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("activates_at", sa.BigInteger(), nullable=False),
        sa.Column("superseded_at", sa.BigInteger(), nullable=True),
        sa.Column("retired_at", sa.BigInteger(), nullable=True),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        sa.Column("private_enc", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("kid", name="pk_token_signing_keys"),
    )
    op.create_table(
        "token_clients",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_hash", sa.String(300), nullable=False),
        sa.Column("allowed_audiences", sa.Text(), nullable=False),
        sa.Column("allowed_claims", sa.Text(), nullable=False),
        sa.Column("max_ttl_s", sa.Integer(), nullable=False),
        sa.Column("rate_limit", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", name="pk_token_clients"),
    )
    op.create_table(
        "tokens",
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("alg", sa.String(16), nullable=False),
        sa.Column("token_type", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column("client_id", sa.String(64), nullable=True),
        sa.Column("audience", sa.Text(), nullable=False),
        sa.Column("session_ref", sa.String(128), nullable=True),
        sa.Column("claim_names", sa.Text(), nullable=False),
        sa.Column("iat", sa.BigInteger(), nullable=False),
        sa.Column("exp", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.BigInteger(), nullable=True),
        sa.Column("changed_by", sa.String(200), nullable=True),
        sa.Column("change_reason", sa.String(500), nullable=True),
        sa.Column("replaced_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("jti", name="pk_tokens"),
    )
    op.create_index("ix_tokens_subject_iat", "tokens", ["subject", "iat"])
    op.create_index("ix_tokens_session_ref", "tokens", ["session_ref"])
    op.create_index("ix_tokens_state_exp", "tokens", ["state", "exp"])
    op.create_index("ix_tokens_kid_exp", "tokens", ["kid", "exp"])
    op.create_table(
        "token_access_list",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("list", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_token_access_list"),
        sa.UniqueConstraint("list", "kind", "value", name="uq_token_access_list_entry"),
    )


def downgrade() -> None:
    op.drop_table("token_access_list")
    for name in ("ix_tokens_kid_exp", "ix_tokens_state_exp", "ix_tokens_session_ref"):
        op.drop_index(name, table_name="tokens")
    op.drop_index("ix_tokens_subject_iat", table_name="tokens")
    op.drop_table("tokens")
    op.drop_table("token_clients")
    op.drop_table("token_signing_keys")
