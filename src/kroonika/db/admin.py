"""Tables of administration and jobs (``kroonika.admin`` and ``kroonika.jobs`` own the logic).

- ``admin_role``: which person (personal code, as the session knows it) holds which role.
- ``admin_role_request``: role changes waiting for a second administrator (until
  ``expires_at``).
- ``admin_config_request``: runtime configuration changes that weaken a control, waiting
  for a second administrator (the requested values as ``runtime_config`` stores them:
  secrets sealed; what each key's version and value were when asked). ``target`` says
  what the request changes: ``config`` (the runtime configuration) or ``client/<id>``
  (one token client's own settings, its keys ``client.<field>``).
- ``admin_api_key``: automation credentials; only the SHA-256 of the secret part is stored.
- ``runtime_config``: runtime-changeable settings (JSON values) with a version per key.
- ``pseudonym_key_state``: one row, the pseudonymisation key id the service last ran with,
  so that a start under another key is recorded as its rotation (decision 0022).
- ``job_state``: per job its lease (the single-runner lock), the last schedule slot it ran
  for, and its cursor, what a run keeps for the next (``audit_retention``: how far lone
  ``planned`` records are settled); ``job_run``: the run history (the backoff after
  timed-out runs is read from it).

Times are integer seconds since the epoch (the same on SQLite and PostgreSQL).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text

from kroonika.db import metadata

admin_role = Table(
    "admin_role",
    metadata,
    Column("subject", String(80), primary_key=True),
    Column("role", String(16), primary_key=True),
    Column("granted_by", String(200), nullable=False),
    Column("granted_at", BigInteger, nullable=False),
)

admin_role_request = Table(
    "admin_role_request",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("subject", String(80), nullable=False),
    Column("role", String(16), nullable=False),
    Column("action", String(8), nullable=False),  # grant | revoke
    Column("requested_by", String(200), nullable=False),
    Column("requested_at", BigInteger, nullable=False),
    Column("justification", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | approved | rejected
    Column("decided_by", String(200), nullable=True),
    Column("decided_at", BigInteger, nullable=True),
    Column("expires_at", BigInteger, nullable=False),
)
Index("ix_admin_role_request_status", admin_role_request.c.status)

admin_config_request = Table(
    "admin_config_request",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("changes", Text, nullable=False),  # JSON {key: stored form of the value}
    Column("expected", Text, nullable=False),  # JSON {key: [version, value or null]}
    Column("weakening", Text, nullable=False),  # JSON [key, ...]
    Column("requested_by", String(200), nullable=False),
    Column("requested_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("justification", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | approved | rejected
    Column("decided_by", String(200), nullable=True),
    Column("decided_at", BigInteger, nullable=True),
    Column("target", String(100), nullable=False, server_default="config"),
)
Index("ix_admin_config_request_status", admin_config_request.c.status)

admin_api_key = Table(
    "admin_api_key",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("secret_digest", String(64), nullable=False),
    Column("roles", String(200), nullable=False),  # comma-separated
    Column("created_by", String(200), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    Column("revoked_by", String(200), nullable=True),
    Column("last_used_at", BigInteger, nullable=True),
)

runtime_config = Table(
    "runtime_config",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),  # JSON
    Column("version", Integer, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(200), nullable=False),
)

pseudonym_key_state = Table(
    "pseudonym_key_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("kid", String(16), nullable=False),
    Column("since", BigInteger, nullable=False),
)

job_state = Table(
    "job_state",
    metadata,
    Column("job", String(64), primary_key=True),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_until", BigInteger, nullable=True),
    Column("run_id", String(40), nullable=True),
    Column("last_slot", BigInteger, nullable=True),
    Column("cursor", Text, nullable=True),
    Column("last_started_at", BigInteger, nullable=True),
    Column("last_finished_at", BigInteger, nullable=True),
    Column("last_outcome", String(16), nullable=True),
)

job_run = Table(
    "job_run",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("job", String(64), nullable=False),
    Column("trigger", String(200), nullable=False),
    Column("owner", String(100), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("outcome", String(16), nullable=False),  # running | success | failure | interrupted
    Column("counts", Text, nullable=False),  # JSON {kind: n}
    Column("error", String(200), nullable=True),
    Column("resumed", Boolean, nullable=False, default=False),
)
Index("ix_job_run_job_started_at", job_run.c.job, job_run.c.started_at)

__all__ = [
    "admin_api_key",
    "admin_config_request",
    "admin_role",
    "admin_role_request",
    "job_run",
    "job_state",
    "pseudonym_key_state",
    "runtime_config",
]
