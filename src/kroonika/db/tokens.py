"""Tables of the token service: signing keys, clients, issued tokens, allow/deny lists.

Token *values* are never stored: a token is known by its ``jti``. Private signing
keys are stored encrypted (AES-256-GCM under the master key, AAD = kid); client
secrets only as scrypt hashes.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from kroonika.db import metadata

signing_keys = Table(
    "token_signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("alg", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    # Published in the JWKS from created_at; used for signing from activates_at.
    Column("activates_at", BigInteger, nullable=False),
    # The order in which keys were given their activation time (at creation, or when a
    # staged key is activated): of keys activating in the same second, the later one
    # signs (decision 0006). NULL for keys made before migration k0005, counted as 0.
    Column("activation_seq", BigInteger, nullable=True),
    # Set when a newer key took over signing; kept (and published) until the last
    # token it signed has expired, then retired and unpublished.
    Column("superseded_at", BigInteger, nullable=True),
    Column("retired_at", BigInteger, nullable=True),
    Column("public_jwk", Text, nullable=False),
    Column("private_enc", LargeBinary, nullable=False),
)

clients = Table(
    "token_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("secret_hash", String(300), nullable=False),
    Column("allowed_audiences", Text, nullable=False),  # JSON list
    Column("allowed_claims", Text, nullable=False),  # JSON list
    Column("max_ttl_s", Integer, nullable=False),
    Column("rate_limit", String(64), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    # Bumped by every write (decision 0026): an undo puts its fields back only while the
    # client is still at the version its change produced. The server default gives 1 to
    # a client an instance not yet running migration k0004's code registers.
    Column("version", Integer, nullable=False, default=1, server_default="1"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("kid", String(64), nullable=False),
    Column("alg", String(16), nullable=False),
    Column("token_type", String(16), nullable=False),  # session | custom
    Column("subject", String(200), nullable=True),
    Column("client_id", String(64), nullable=True),  # issued to (minting client)
    Column("audience", Text, nullable=False),  # JSON list
    Column("session_ref", String(128), nullable=True),
    Column("claim_names", Text, nullable=False),  # JSON list
    Column("iat", BigInteger, nullable=False),
    Column("exp", BigInteger, nullable=False),
    # active | revoked | replaced | expired
    Column("state", String(16), nullable=False),
    Column("version", Integer, nullable=False, default=1),
    Column("changed_at", BigInteger, nullable=True),
    Column("changed_by", String(200), nullable=True),
    Column("change_reason", String(500), nullable=True),
    Column("replaced_by", String(64), nullable=True),
    Index("ix_tokens_subject_iat", "subject", "iat"),
    Index("ix_tokens_session_ref", "session_ref"),
    Index("ix_tokens_state_exp", "state", "exp"),
    Index("ix_tokens_kid_exp", "kid", "exp"),
)

access_list = Table(
    "token_access_list",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("list", String(8), nullable=False),  # allow | deny
    Column("kind", String(8), nullable=False),  # jti | subject | client | ip
    Column("value", String(200), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Column("updated_at", BigInteger, nullable=True),
    UniqueConstraint("list", "kind", "value", name="uq_token_access_list_entry"),
)

__all__ = ["access_list", "clients", "signing_keys", "tokens"]
