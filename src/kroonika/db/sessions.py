"""Tables of the login flows and sessions (``kroonika.sessions`` owns the logic).

Nothing secret is stored in clear: a flow is found by the SHA-256 of its ``state`` and keeps
only the SHA-256 of its ``nonce``; a session is found by the SHA-256 of its cookie value. The
public ``ref`` of a session is what the citizen sees and what the API takes in URLs.
Times are integer seconds since the epoch (the same on SQLite and PostgreSQL).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, String, Table, Text

from kroonika.db import metadata

login_flow = Table(
    "login_flow",
    metadata,
    Column("flow_id", String(36), primary_key=True),
    Column("state_digest", String(64), nullable=False, unique=True),
    Column("nonce_digest", String(64), nullable=False),
    Column("acr_requested", String(16), nullable=False),
    Column("methods", String(64), nullable=False),
    Column("ui_locales", String(16), nullable=False),
    Column("return_to", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("consumed_at", BigInteger, nullable=True),
)
Index("ix_login_flow_expires_at", login_flow.c.expires_at)

session = Table(
    "session",
    metadata,
    Column("ref", String(32), primary_key=True),
    Column("secret_digest", String(64), nullable=False, unique=True),
    Column("subject", String(80), nullable=False),
    Column("given_name", String(256), nullable=True),
    Column("family_name", String(256), nullable=True),
    Column("method", String(16), nullable=False),
    Column("acr", String(16), nullable=False),
    Column("flow_id", String(36), nullable=True),
    Column("ip", String(64), nullable=True),
    Column("user_agent", String(512), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("idle_expires_at", BigInteger, nullable=False),
    Column("absolute_expires_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger, nullable=True),
    Column("end_reason", String(32), nullable=True),
)
Index("ix_session_subject_ended_at", session.c.subject, session.c.ended_at)
Index("ix_session_idle_expires_at", session.c.idle_expires_at)
Index("ix_session_ended_at", session.c.ended_at)  # retention deletes

__all__ = ["login_flow", "session"]
