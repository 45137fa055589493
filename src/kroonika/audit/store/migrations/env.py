"""Alembic environment of the audit store; run through ``SqlAuditStore.upgrade()``."""

from __future__ import annotations

from alembic import context

from kroonika.audit.store._schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="audit_schema_version",
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
